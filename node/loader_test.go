package node

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/loader/loadertest"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
)

// Two nodes — two loaders with their own maps, each fed by its own
// handlespace that received the same registrations in a different order, as
// two registrars do through ENRP — program identical tables: every flow
// picks the same PE at both. This is what lets ECMP spread flows over nodes.
func TestTwoNodesProgramIdenticalTables(t *testing.T) {
	testenv.RequireRoot(t)
	v, _ := ParseVIP("web=10.200.1.1:80/tcp")
	now := time.Unix(1000, 0)
	var loaders [2]*loader.Loader
	var hss [2]*selector.Handlespace
	for n := range loaders {
		l, err := loader.Open(loader.Options{PinDir: loadertest.PinDir(t), TableSize: 4099})
		if err != nil {
			t.Fatalf("node %d: open loader: %v", n, err)
		}
		t.Cleanup(func() { l.Close(false) })
		loaders[n] = l
		hs, _ := selector.New(selector.Config{})
		hss[n] = hs
		s := NewSyncer(hs, l, []VIP{v}, false, nil)
		if _, err := s.Start(0); err != nil {
			t.Fatal(err)
		}
		ids := []uint32{11, 22, 33, 44}
		if n == 1 {
			ids = []uint32{44, 22, 33, 11}
		}
		for _, id := range ids {
			p := pe(id, policy.WeightedRoundRobin(id/11), fmt.Sprintf("10.0.0.%d", id))
			if _, err := hs.Register("web", p, now); err != nil {
				t.Fatal(err)
			}
			if err := s.SyncPool("web"); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := map[uint32]int{}
	for i := 0; i < 20000; i++ {
		f := loader.Flow{Src: netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)}), uint16(1024+i%50000)),
			Dst: v.Key().VIP, Proto: loader.TCP}
		a, okA, errA := loaders[0].Pick(v.Key(), f)
		b, okB, errB := loaders[1].Pick(v.Key(), f)
		if errA != nil || errB != nil || !okA || !okB {
			t.Fatalf("pick: %v %v %v %v", okA, okB, errA, errB)
		}
		if a != b {
			t.Fatalf("flow %v: node 0 picks PE %d, node 1 picks PE %d", f, a, b)
		}
		count[a]++
	}
	// Weights 1:2:3:4 — each PE's share within 2 points of its weight's.
	for id, w := range map[uint32]float64{11: 0.1, 22: 0.2, 33: 0.3, 44: 0.4} {
		got := float64(count[id]) / 20000
		if got < w-0.02 || got > w+0.02 {
			t.Errorf("PE %d: share %.3f, want %.2f", id, got, w)
		}
	}
	t.Logf("20000 flows, identical choice on both nodes; shares: %v", count)
}

// The syncer against the real loader: deregistration drains, removal frees
// the PE, and the data plane's view reads back equal to the handlespace's.
func TestSyncerProgramsRealMaps(t *testing.T) {
	testenv.RequireRoot(t)
	l, err := loader.Open(loader.Options{PinDir: loadertest.PinDir(t), TableSize: 251})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(false) })
	v, _ := ParseVIP("web=10.200.1.1:80/tcp")
	hs, _ := selector.New(selector.Config{DrainTimeout: time.Minute})
	s := NewSyncer(hs, l, []VIP{v}, false, nil)
	if _, err := s.Start(0); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	for i := uint32(1); i <= 3; i++ {
		if _, err := hs.Register("web", pe(i, policy.RoundRobin(), fmt.Sprintf("10.0.0.%d", i)), now); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step, want string) {
		t.Helper()
		if err := s.SyncPool("web"); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		svcs, err := l.Services()
		if err != nil {
			t.Fatal(err)
		}
		if got := describe(svcs[v.Key()]); got != want {
			t.Errorf("%s: data plane holds %q, want %q", step, got, want)
		}
		if r, err := s.Reconcile(); err != nil || len(r) != 0 {
			t.Errorf("%s: reconcile found drift right after sync: %+v %v", step, r, err)
		}
	}
	check("registered", "1:10.0.0.1:w1:active 2:10.0.0.2:w1:active 3:10.0.0.3:w1:active")
	if _, err := hs.Deregister("web", 2, now); err != nil {
		t.Fatal(err)
	}
	check("pe 2 deregistered", "1:10.0.0.1:w1:active 2:10.0.0.2:w0:draining 3:10.0.0.3:w1:active")
	if _, err := hs.Remove("web", 3, selector.ReasonNone); err != nil {
		t.Fatal(err)
	}
	check("pe 3 removed", "1:10.0.0.1:w1:active 2:10.0.0.2:w0:draining")
	// Every new flow goes to PE 1 now: the draining PE takes none.
	for i := 0; i < 500; i++ {
		f := loader.Flow{Src: netip.AddrPortFrom(netip.MustParseAddr("192.168.1.10"), uint16(2000+i)), Dst: v.Key().VIP, Proto: loader.TCP}
		id, ok, err := l.Pick(v.Key(), f)
		if err != nil || !ok || id != 1 {
			t.Fatalf("flow %d: pick %d %v %v, want PE 1", i, id, ok, err)
		}
	}
}
