package loader

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"

	"github.com/rspxdp/rspxdp/bpf"
	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/loader/loadertest"
)

// inNetns runs f on a thread moved into a fresh network namespace, which
// disappears, with every interface made in it, when f returns.
func inNetns(t *testing.T, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			t.Fatalf("back to the original netns: %v", err)
		}
		ns.Close()
	}()
	f()
}

func addVeth(t *testing.T, name, peer string) {
	t.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	for _, n := range []string{name, peer} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}

// xdpProg returns the id of the XDP program attached to an interface (0 if
// none) and the attach mode.
func xdpProg(t *testing.T, name string) (uint32, uint32) {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached {
		return 0, 0
	}
	return x.ProgId, x.AttachMode
}

func progID(t *testing.T, p *ebpf.Program) uint32 {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return uint32(id)
}

var (
	restartSvc = ServiceKey{VIP: netip.MustParseAddrPort("10.200.1.1:80"), Proto: TCP}
	restartHop = StaticResolver{netip.Addr{}: {Ifindex: 1, SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0xaa}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0xbb}}}
)

// synFrame is the shared reference SYN (192.168.1.10:31337 -> 10.200.1.1:80).
func synFrame() []byte {
	b, _ := hexDecode("0200000000020200000000010800450000320001400040066d4ac0a8010a0ac801017a690050000003e8000000005002ffff8e9100006b617472616e20747374")
	return b
}

// ackFrame is the shared reference ACK of the same flow.
func ackFrame() []byte {
	b, _ := hexDecode("0200000000020200000000010800450000320001400040066d4ac0a8010a0ac801017a690050000003e9000013895018ffff7af100006b617472616e20747374")
	return b
}

func hexDecode(s string) ([]byte, error) {
	b := make([]byte, len(s)/2)
	for i := range b {
		var v byte
		for _, c := range s[2*i : 2*i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			case c >= 'a' && c <= 'f':
				v |= byte(c-'a') + 10
			default:
				return nil, errors.New("bad hex")
			}
		}
		b[i] = v
	}
	return b, nil
}

func runOnce(t *testing.T, l *Loader, in []byte) (uint32, []byte) {
	t.Helper()
	opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256)}
	ret, err := l.Program().Run(&opts)
	if err != nil {
		t.Fatal(err)
	}
	return ret, opts.DataOut
}

// TestRestartKeepsState: a loader closed with keepState leaves the program
// attached and every map pinned; a new loader on the same directory takes
// over services, PEs, connection entries and counters, replaces the program
// in the pinned link without detaching, and goes on allocating without
// clashing. Close(false) then detaches and unpins everything.
func TestRestartKeepsState(t *testing.T) {
	pinDir := loadertest.PinDir(t)
	inNetns(t, func() {
		addVeth(t, "lbt0", "lbt1")
		opts := Options{PinDir: pinDir, Interfaces: []string{"lbt0"}, Mode: ModeNative,
			SourceV4: netip.MustParseAddr("192.0.2.254"), Resolver: restartHop}
		l1, err := Open(opts)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		if err := l1.UpsertService(Service{ServiceKey: restartSvc}); err != nil {
			t.Fatal(err)
		}
		bes := []Backend{
			{ID: 7, Addr: netip.MustParseAddr("10.0.0.1"), Weight: 1, State: Active},
			{ID: 8, Addr: netip.MustParseAddr("10.0.0.2"), Weight: 1, State: Active},
		}
		if err := l1.SetBackends(restartSvc, bes); err != nil {
			t.Fatal(err)
		}
		ret, out1 := runOnce(t, l1, synFrame())
		if ret != 3 {
			t.Fatalf("verdict %d, want XDP_TX", ret)
		}
		id1, mode := xdpProg(t, "lbt0")
		if id1 != progID(t, l1.Program()) || mode != uint32(nl.XDP_ATTACHED_DRV) {
			t.Fatalf("attached prog %d mode %d, want %d in driver mode", id1, mode, progID(t, l1.Program()))
		}
		if err := l1.Close(true); err != nil {
			t.Fatalf("close keeping state: %v", err)
		}
		if id, _ := xdpProg(t, "lbt0"); id != id1 {
			t.Fatalf("after Close(true): attached prog %d, want %d still attached", id, id1)
		}

		l2, err := Open(opts)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		svcs, err := l2.Services()
		if err != nil {
			t.Fatal(err)
		}
		if got := svcs[restartSvc]; len(got) != 2 || got[0].ID != 7 || got[1].ID != 8 || got[1].Addr != bes[1].Addr {
			t.Fatalf("restored backends %+v, want %+v", got, bes)
		}
		if n, err := l2.ConnCount(); err != nil || n != 1 {
			t.Fatalf("restored connection table: %d entries (err %v), want 1", n, err)
		}
		st, err := l2.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Services[restartSvc].Packets != 1 || st.ConnMisses != 1 {
			t.Errorf("restored counters: %+v misses %d, want 1 packet and 1 miss", st.Services[restartSvc], st.ConnMisses)
		}
		// The established flow is a hit, to the same PE (same outer
		// Ethernet and IP headers).
		_, out2 := runOnce(t, l2, ackFrame())
		if !bytes.Equal(out1[:34], out2[:34]) {
			t.Errorf("flow moved across the restart")
		}
		if st, _ := l2.Stats(); st.ConnHits != 1 {
			t.Errorf("hits after restart %d, want 1", st.ConnHits)
		}
		id2, _ := xdpProg(t, "lbt0")
		if id2 != progID(t, l2.Program()) {
			t.Errorf("pinned link runs prog %d, want the new loader's %d", id2, progID(t, l2.Program()))
		}
		// Slots allocated after a restart must not reuse live ones.
		bes = append(bes, Backend{ID: 9, Addr: netip.MustParseAddr("10.0.0.3"), Weight: 1, State: Active})
		if err := l2.SetBackends(restartSvc, bes); err != nil {
			t.Fatal(err)
		}
		if got, _ := l2.Services(); len(got[restartSvc]) != 3 {
			t.Errorf("after adding a PE: %+v", got[restartSvc])
		}
		other := ServiceKey{VIP: netip.MustParseAddrPort("10.200.1.9:80"), Proto: TCP}
		if err := l2.UpsertService(Service{ServiceKey: other}); err != nil {
			t.Fatal(err)
		}
		if got, _ := l2.Services(); len(got) != 2 {
			t.Errorf("services after adding one: %d, want 2", len(got))
		}

		if err := l2.Close(false); err != nil {
			t.Fatalf("close: %v", err)
		}
		if id, _ := xdpProg(t, "lbt0"); id != 0 {
			t.Errorf("after Close(false): prog %d still attached", id)
		}
		if _, err := os.Stat(pinDir); !errors.Is(err, os.ErrNotExist) {
			entries, _ := os.ReadDir(pinDir)
			t.Errorf("pin dir left behind: %v %v", err, entries)
		}
	})
}

// TestGenericFallback: an interface without native XDP (loopback) gets the
// program in generic mode, with a warning that says so.
func TestGenericFallback(t *testing.T) {
	pinDir := loadertest.PinDir(t)
	inNetns(t, func() {
		var logs bytes.Buffer
		l, err := Open(Options{PinDir: pinDir, Interfaces: []string{"lo"}, Resolver: restartHop,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer l.Close(false)
		id, mode := xdpProg(t, "lo")
		if id != progID(t, l.Program()) || mode != uint32(nl.XDP_ATTACHED_SKB) {
			t.Errorf("lo: prog %d mode %d, want generic mode", id, mode)
		}
		if !strings.Contains(logs.String(), "falling back to generic mode") {
			t.Errorf("no fallback warning; log: %q", logs.String())
		}
		if _, err := os.Stat(filepath.Join(pinDir, "link_lo")); err != nil {
			t.Errorf("link not pinned: %v", err)
		}
	})
}

// TestOpenRejectsMismatch: pinned state made with one table size is not
// silently reused with another.
func TestOpenRejectsMismatch(t *testing.T) {
	pinDir := loadertest.PinDir(t)
	l, err := Open(Options{PinDir: pinDir, TableSize: 251, Resolver: restartHop})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(true); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{PinDir: pinDir, TableSize: 65537, Resolver: restartHop}); err == nil {
		t.Fatal("reopened 251-slot state with 65537 slots")
	}
	if _, err := Open(Options{PinDir: pinDir, TableSize: 100, Resolver: restartHop}); err == nil {
		t.Fatal("accepted a table size that is not prime")
	}
	l, err = Open(Options{PinDir: pinDir, TableSize: 251, Resolver: restartHop})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(false); err != nil {
		t.Fatal(err)
	}
}

// TestAPIErrors: mistakes are refused without touching the maps.
func TestAPIErrors(t *testing.T) {
	pinDir := loadertest.PinDir(t)
	l, err := Open(Options{PinDir: pinDir, Resolver: restartHop})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(false)
	if err := l.SetBackends(restartSvc, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetBackends on unknown service: %v", err)
	}
	if err := l.UpsertService(Service{ServiceKey: ServiceKey{VIP: restartSvc.VIP, Proto: 1}}); err == nil {
		t.Error("accepted ICMP as a service protocol")
	}
	if err := l.UpsertService(Service{ServiceKey: restartSvc}); err != nil {
		t.Fatal(err)
	}
	dup := []Backend{{ID: 1, Addr: netip.MustParseAddr("10.0.0.1"), Weight: 1, State: Active}, {ID: 1, Addr: netip.MustParseAddr("10.0.0.2"), Weight: 1, State: Active}}
	if err := l.SetBackends(restartSvc, dup); err == nil {
		t.Error("accepted a PE listed twice")
	}
	if err := l.SetBackends(restartSvc, []Backend{{ID: 1, Addr: netip.MustParseAddr("10.0.0.1"), Weight: 1}}); err == nil {
		t.Error("accepted a PE without state")
	}
	if err := l.SetBackends(restartSvc, []Backend{{ID: 1, Addr: netip.MustParseAddr("10.0.0.1"), Weight: 1, State: Active}}); err != nil {
		t.Fatal(err)
	}
	if err := l.RemoveService(restartSvc); err != nil {
		t.Fatal(err)
	}
	if err := l.RemoveService(restartSvc); !errors.Is(err, ErrNotFound) {
		t.Errorf("second remove: %v", err)
	}
	// The removed service's packets pass to the host again.
	if ret, _ := runOnce(t, l, synFrame()); ret != 2 {
		t.Errorf("removed service: verdict %d, want XDP_PASS", ret)
	}
}

func loadertestRoot(t *testing.T) { testenv.RequireRoot(t) }

// TestOpenFailureDetaches: when one interface cannot be attached, the ones
// Open already attached are detached again.
func TestOpenFailureDetaches(t *testing.T) {
	pinDir := loadertest.PinDir(t)
	inNetns(t, func() {
		addVeth(t, "lbf0", "lbf1")
		_, err := Open(Options{PinDir: pinDir, Interfaces: []string{"lbf0", "nosuchif0"}, Resolver: restartHop})
		if err == nil {
			t.Fatal("attached to an interface that does not exist")
		}
		if id, _ := xdpProg(t, "lbf0"); id != 0 {
			t.Errorf("failed Open left prog %d attached to lbf0", id)
		}
	})
}

// TestUnresolvableNextHop: a PE whose next hop cannot be found never blocks
// its pool: down PEs need no next hop, a known PE keeps its last one, and a
// new unresolvable PE is programmed down while the others are applied.
func TestUnresolvableNextHop(t *testing.T) {
	pinDir := loadertest.PinDir(t)
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 0xbb}
	res := StaticResolver{netip.MustParseAddr("10.0.0.1"): {Ifindex: 1, SrcMAC: mac, DstMAC: mac}}
	l, err := Open(Options{PinDir: pinDir, Resolver: res})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(false)
	if err := l.UpsertService(Service{ServiceKey: restartSvc}); err != nil {
		t.Fatal(err)
	}
	pe1 := Backend{ID: 1, Addr: netip.MustParseAddr("10.0.0.1"), Weight: 1, State: Active}
	pe2 := Backend{ID: 2, Addr: netip.MustParseAddr("10.0.0.2"), Weight: 1, State: Active}
	pe3 := Backend{ID: 3, Addr: netip.MustParseAddr("10.0.0.3"), Weight: 1, State: Down}
	err = l.SetBackends(restartSvc, []Backend{pe1, pe2, pe3})
	if !errors.Is(err, ErrNoNextHop) || !strings.Contains(err.Error(), "PE 2") || strings.Contains(err.Error(), "PE 3") {
		t.Fatalf("SetBackends: %v, want ErrNoNextHop for PE 2 only", err)
	}
	got, _ := l.Services()
	states := map[uint32]State{}
	for _, b := range got[restartSvc] {
		states[b.ID] = b.State
	}
	if states[1] != Active || states[2] != Down || states[3] != Down {
		t.Fatalf("states %v, want 1 active, 2 and 3 down", states)
	}
	// PE 1's host stops answering: it keeps the next hop it had.
	delete(res, netip.MustParseAddr("10.0.0.1"))
	if err := l.SetBackends(restartSvc, []Backend{pe1, pe3}); err != nil {
		t.Fatalf("SetBackends with a known PE now unresolvable: %v", err)
	}
	if ret, out := runOnce(t, l, synFrame()); ret != 3 || !bytes.Equal(out[:6], mac) {
		t.Errorf("known PE: verdict %d, dst MAC %x; want XDP_TX to %s", ret, out[:6], mac)
	}
}

// TestConnTableDefault: Katran's capacity unless memory is short, then an
// eighth of it, never under 262,144.
func TestConnTableDefault(t *testing.T) {
	for _, c := range []struct {
		mem  uint64
		want uint32
	}{
		{0, DefaultConnTableSize},
		{64 << 30, DefaultConnTableSize},
		{4 << 30, uint32((4 << 30) / 8 / ConnBytesPerFlow)},
		{128 << 20, 1 << 18},
	} {
		if got := connTableDefault(c.mem); got != c.want {
			t.Errorf("connTableDefault(%d) = %d, want %d", c.mem, got, c.want)
		}
	}
}

// TestDataPlaneDefaults: a loader opened with no sizes has the default
// connection table, the flood guard on at Katran's limit, per-flow outer
// sources; NoFloodLimit turns the guard off.
func TestDataPlaneDefaults(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range []struct {
		name  string
		flood uint32
		want  uint32
	}{{"default", 0, DefaultFloodLimit}, {"off", NoFloodLimit, 0}, {"set", 1000, 1000}} {
		t.Run(c.name, func(t *testing.T) {
			l, err := Open(Options{PinDir: loadertest.PinDir(t), Resolver: StaticResolver{}, FloodLimit: c.flood, ConnTableSize: 1 << 18})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close(false)
			var cfg bpf.LbConfig
			if err := l.objs.LbConfig.Lookup(uint32(0), &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.FloodLimit != c.want {
				t.Errorf("flood limit %d, want %d", cfg.FloodLimit, c.want)
			}
			if want := addrWords(netip.MustParseAddr("172.16.0.0"))[0]; cfg.SrcV4 != want || cfg.SrcV4Mask != hostMask(DefaultSourcePrefixV4)[0] {
				t.Errorf("outer IPv4 source %#x mask %#x, want 172.16.0.0/16", cfg.SrcV4, cfg.SrcV4Mask)
			}
			if cfg.SrcV6Mask.W[0] != 0 || cfg.SrcV6Mask.W[1] != 0 || cfg.SrcV6Mask.W[2] != ^uint32(0) || cfg.SrcV6Mask.W[3] != ^uint32(0) {
				t.Errorf("outer IPv6 source mask %x, want the low 64 bits", cfg.SrcV6Mask.W)
			}
		})
	}
	var o Options
	o.setDefaults()
	if o.ConnTableSize != connTableDefault(memTotal()) || o.ConnTableSize < 1<<18 {
		t.Errorf("default connection table %d flows", o.ConnTableSize)
	}
	if _, err := Open(Options{PinDir: loadertest.PinDir(t), Resolver: StaticResolver{}, SourcePrefixV6: netip.MustParsePrefix("fc00::/48")}); err == nil {
		t.Errorf("Open accepted an IPv6 source prefix shorter than /64")
	}
}
