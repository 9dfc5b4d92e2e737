package selector

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/selector/policy"
)

func TestConsistencyCauses(t *testing.T) {
	base := mkPE(1, policy.RoundRobin())
	tests := []struct {
		name   string
		mutate func(el *PoolElement)
		cause  Cause
		is     error
	}{
		{"other policy", func(el *PoolElement) { el.Policy = policy.LeastUsed(1) }, CauseInconsistentPolicy, ErrInconsistentPolicy},
		{"other protocol", func(el *PoolElement) { el.Transport.Protocol = SCTP }, CauseInconsistentTransport, ErrInconsistentTransport},
		{"other transport use", func(el *PoolElement) { el.Transport.Use = DataAndControl }, CauseInconsistentDataControl, ErrInconsistentDataCtrl},
		{"same id other element", func(el *PoolElement) { el.ID = 1; el.Transport.Addrs = []netip.Addr{addr(99)} }, CauseNonUniqueID, ErrNonUniqueID},
		{"same id other owner", func(el *PoolElement) { el.ID = 1; el.Owner = "mallory" }, CauseNonUniqueID, ErrNonUniqueID},
		{"id zero", func(el *PoolElement) { el.ID = 0 }, CauseInvalidValues, ErrInvalid},
		{"no address", func(el *PoolElement) { el.Transport.Addrs = nil }, CauseInvalidValues, ErrInvalid},
		{"unknown policy", func(el *PoolElement) { el.Policy.Type = 0x77 }, CauseInvalidValues, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHS(t, Config{})
			mustRegister(t, h, "pool", base, t0)
			el := mkPE(2, policy.RoundRobin())
			tc.mutate(&el)
			_, err := h.Register("pool", el, t0)
			if c, ok := CauseOf(err); !ok || c != tc.cause {
				t.Fatalf("err %v: cause %v, want %v", err, c, tc.cause)
			}
			if !errors.Is(err, tc.is) {
				t.Fatalf("errors.Is(%v, %v) false", err, tc.is)
			}
			if got := resolveIDs(t, h, "pool", All); !slices.Equal(got, []uint32{1}) {
				t.Fatalf("pool changed by refused registration: %v", got)
			}
		})
	}
}

func TestLoneElementMayChangePolicy(t *testing.T) {
	h := newHS(t, Config{})
	mustRegister(t, h, "p", mkPE(1, policy.RoundRobin()), t0)
	el := mkPE(1, policy.LeastUsed(5))
	el.Transport.Protocol = UDP
	mustRegister(t, h, "p", el, t0)
	if _, err := h.Register("p", mkPE(2, policy.RoundRobin()), t0); !errors.Is(err, ErrInconsistentPolicy) {
		t.Fatalf("pool policy not redefined: %v", err)
	}
	ss, _ := h.SteeringSet("p")
	if ss.Policy != policy.TypeLeastUsed {
		t.Fatalf("policy %v", ss.Policy)
	}
}

func TestReRegistrationByOwnerAndReplication(t *testing.T) {
	h := newHS(t, Config{})
	el := mkPE(1, policy.WeightedRoundRobin(1))
	el.Owner = "pe-a"
	mustRegister(t, h, "p", el, t0)
	moved := el
	moved.Transport.Addrs = []netip.Addr{addr(50)} // new address, same owner: allowed
	moved.Policy = policy.WeightedRoundRobin(4)
	added, err := h.Register("p", moved, t0)
	if err != nil || added {
		t.Fatalf("re-registration: added=%v err=%v", added, err)
	}
	got, _ := h.Lookup("p", 1)
	if got.Policy.Weight != 4 || got.Transport.Addrs[0] != addr(50) {
		t.Fatalf("not updated: %+v", got)
	}
	// ENRP replication overwrites regardless of owner.
	other := moved
	other.Owner = "someone"
	other.Home = 9
	if _, err := h.Update("p", other, t0); err != nil {
		t.Fatal(err)
	}
	if got, _ := h.Lookup("p", 1); got.Home != 9 {
		t.Fatalf("update not applied: %+v", got)
	}
}

func TestResolveCounts(t *testing.T) {
	h := newHS(t, Config{MaxHandleResolutionItems: 2})
	for id := uint32(1); id <= 5; id++ {
		mustRegister(t, h, "p", mkPE(id, policy.RoundRobin()), t0)
	}
	for _, tc := range []struct{ n, want int }{{0, 2}, {1, 1}, {4, 4}, {9, 5}, {All, 5}} {
		if got := resolveIDs(t, h, "p", tc.n); len(got) != tc.want {
			t.Errorf("n=%d: %d elements, want %d", tc.n, len(got), tc.want)
		}
	}
	if _, err := h.Resolve("nope", 0, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown pool: %v", err)
	}
	// The buffer is reused: no allocation when it has room.
	buf := make([]PoolElement, 0, 8)
	allocs := testing.AllocsPerRun(100, func() { buf, _ = h.Resolve("p", 3, buf[:0]) })
	if allocs != 0 {
		t.Fatalf("%v allocations per resolution", allocs)
	}
}

func TestBadPEReports(t *testing.T) {
	h := newHS(t, Config{MaxBadPEReports: 3})
	mustRegister(t, h, "p", mkPE(1, policy.RoundRobin()), t0)
	mustRegister(t, h, "p", mkPE(2, policy.RoundRobin()), t0)
	sub := h.Subscribe()
	for i := 1; i <= 3; i++ {
		removed, err := h.ReportUnreachable("p", 1)
		if err != nil {
			t.Fatal(err)
		}
		if removed != (i == 3) {
			t.Fatalf("report %d: removed=%v", i, removed)
		}
		if i == 2 {
			// Re-registration keeps the count (rsplib).
			mustRegister(t, h, "p", mkPE(1, policy.RoundRobin()), t0)
			if got, _ := h.Lookup("p", 1); got.Reports != 2 {
				t.Fatalf("reports %d after refresh, want 2", got.Reports)
			}
		}
	}
	if got := resolveIDs(t, h, "p", All); !slices.Equal(got, []uint32{2}) {
		t.Fatalf("left %v", got)
	}
	ch := sub.Drain()
	if len(ch) != 1 || ch[0].Kinds&Removed == 0 || ch[0].Events[len(ch[0].Events)-1].Reason != ReasonUnreachable {
		t.Fatalf("events %+v", ch)
	}
	// Gone from the steering set at once: its flows must move.
	ss, _ := h.SteeringSet("p")
	if len(ss.Members) != 1 || ss.Members[0].ID != 2 {
		t.Fatalf("steering %+v", ss.Members)
	}
}

func TestExpiry(t *testing.T) {
	var expired []uint32
	h := newHS(t, Config{OnExpire: func(handle string, pe PoolElement) { expired = append(expired, pe.ID) }})
	for id := uint32(1); id <= 3; id++ {
		el := mkPE(id, policy.RoundRobin())
		el.Lifetime = time.Duration(id) * time.Second
		mustRegister(t, h, "p", el, t0)
	}
	if d, ok := h.NextDeadline(); !ok || !d.Equal(t0.Add(time.Second)) {
		t.Fatalf("next deadline %v %v", d, ok)
	}
	// Refresh 1 at t0+0.5s: now expires at 1.5s.
	el := mkPE(1, policy.RoundRobin())
	el.Lifetime = time.Second
	mustRegister(t, h, "p", el, t0.Add(500*time.Millisecond))
	if n := h.Sweep(t0.Add(1200 * time.Millisecond)); n != 0 || len(expired) != 0 {
		t.Fatalf("expired %v early", expired)
	}
	if n := h.Sweep(t0.Add(2 * time.Second)); n != 2 || !slices.Equal(expired, []uint32{1, 2}) {
		t.Fatalf("sweep: n=%d expired=%v", n, expired)
	}
	if got := resolveIDs(t, h, "p", All); !slices.Equal(got, []uint32{3}) {
		t.Fatalf("left %v", got)
	}
	h.Sweep(t0.Add(time.Hour))
	if _, ok := h.SteeringSet("p"); ok || len(h.Pools()) != 0 || h.Len() != 0 || h.npools != 0 {
		t.Fatal("empty pool kept")
	}
	// Lifetime 0 never expires.
	el = mkPE(4, policy.RoundRobin())
	el.Lifetime = 0
	mustRegister(t, h, "q", el, t0)
	h.Sweep(t0.Add(1000 * time.Hour))
	if h.Len() != 1 {
		t.Fatal("lifetime 0 expired")
	}
}

func TestDrain(t *testing.T) {
	h := newHS(t, Config{DrainTimeout: 5 * time.Second})
	for id := uint32(1); id <= 3; id++ {
		mustRegister(t, h, "p", mkPE(id, policy.WeightedRandom(10)), t0)
	}
	sub := h.Subscribe()
	out, err := h.Deregister("p", 2, t0)
	if err != nil || out.State != Draining {
		t.Fatalf("deregister: %+v %v", out, err)
	}
	for range 50 {
		if got := resolveIDs(t, h, "p", All); slices.Contains(got, 2) {
			t.Fatal("draining element resolved")
		}
	}
	ss, _ := h.SteeringSet("p")
	if len(ss.Members) != 3 || ss.Members[1].State != Draining || ss.Members[1].Weight != 0 || ss.Members[0].Weight != 10 {
		t.Fatalf("steering %+v", ss.Members)
	}
	if ch := sub.Drain(); len(ch) != 1 || ch[0].Kinds != StateChanged {
		t.Fatalf("events %+v", ch)
	}
	// Drain ends at the timeout.
	h.Sweep(t0.Add(4 * time.Second))
	if ss, _ := h.SteeringSet("p"); len(ss.Members) != 3 {
		t.Fatal("drain ended early")
	}
	h.Sweep(t0.Add(5 * time.Second))
	if ss, _ := h.SteeringSet("p"); len(ss.Members) != 2 {
		t.Fatalf("drain did not end: %+v", ss.Members)
	}
	if ch := sub.Drain(); len(ch) != 1 || ch[0].Events[0].Reason != ReasonDrained {
		t.Fatalf("events %+v", ch)
	}
	// A draining element that registers again is active again.
	if _, err := h.Deregister("p", 3, t0.Add(6*time.Second)); err != nil {
		t.Fatal(err)
	}
	mustRegister(t, h, "p", mkPE(3, policy.WeightedRandom(10)), t0.Add(7*time.Second))
	ss, _ = h.SteeringSet("p")
	if len(ss.Members) != 2 || ss.Members[1].State != Active || ss.Members[1].Weight != 10 {
		t.Fatalf("revived %+v", ss.Members)
	}
	if _, err := h.Deregister("p", 42, t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown element: %v", err)
	}
	// The last active element deregisters: the pool stays for its drain.
	h.Deregister("p", 1, t0)
	h.Deregister("p", 3, t0)
	if _, err := h.Resolve("p", 0, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("resolution of draining-only pool: %v", err)
	}
	if ss, ok := h.SteeringSet("p"); !ok || len(ss.Members) != 2 {
		t.Fatalf("draining-only steering %+v", ss)
	}
	h.Sweep(t0.Add(time.Minute))
	if _, ok := h.SteeringSet("p"); ok {
		t.Fatal("pool not dropped after drain")
	}
}

func TestRemoveImmediately(t *testing.T) {
	h := newHS(t, Config{})
	mustRegister(t, h, "p", mkPE(1, policy.RoundRobin()), t0)
	mustRegister(t, h, "p", mkPE(2, policy.RoundRobin()), t0)
	h.Deregister("p", 2, t0)
	if _, err := h.Remove("p", 2, ReasonKeepAlive); err != nil {
		t.Fatalf("remove draining: %v", err)
	}
	if _, err := h.Remove("p", 1, ReasonKeepAlive); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.SteeringSet("p"); ok {
		t.Fatal("pool kept")
	}
}

func TestLackOfResources(t *testing.T) {
	h := newHS(t, Config{MaxPools: 1, MaxPoolElements: 2})
	mustRegister(t, h, "a", mkPE(1, policy.RoundRobin()), t0)
	if _, err := h.Register("b", mkPE(1, policy.RoundRobin()), t0); !errors.Is(err, ErrLackOfResources) {
		t.Fatalf("pool limit: %v", err)
	}
	mustRegister(t, h, "a", mkPE(2, policy.RoundRobin()), t0)
	if _, err := h.Register("a", mkPE(3, policy.RoundRobin()), t0); !errors.Is(err, ErrLackOfResources) {
		t.Fatalf("element limit: %v", err)
	}
	mustRegister(t, h, "a", mkPE(2, policy.RoundRobin()), t0) // refresh still fine
}

func TestRangeAndElements(t *testing.T) {
	h := newHS(t, Config{})
	for _, pool := range []string{"b", "a"} {
		for _, id := range []uint32{3, 1, 2} {
			mustRegister(t, h, pool, mkPE(id, policy.RoundRobin()), t0)
		}
	}
	var got []string
	h.Range(func(handle string, pe PoolElement) bool {
		got = append(got, handle+string(rune('0'+pe.ID)))
		return len(got) < 4
	})
	if want := []string{"a1", "a2", "a3", "b1"}; !slices.Equal(got, want) {
		t.Fatalf("range %v, want %v", got, want)
	}
}

func TestMaxPoolElementsPerPool(t *testing.T) {
	h := newHS(t, Config{MaxPoolElementsPerPool: 2})
	mustRegister(t, h, "a", mkPE(1, policy.RoundRobin()), t0)
	mustRegister(t, h, "a", mkPE(2, policy.RoundRobin()), t0)
	if _, err := h.Register("a", mkPE(3, policy.RoundRobin()), t0); !errors.Is(err, ErrLackOfResources) {
		t.Fatalf("third PE in a pool of at most 2: %v, want lack of resources", err)
	}
	// A re-registration and another pool are not affected.
	mustRegister(t, h, "a", mkPE(2, policy.RoundRobin()), t0)
	mustRegister(t, h, "b", mkPE(3, policy.RoundRobin()), t0)
}
