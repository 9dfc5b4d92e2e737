package loader_test

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket/layers"

	"github.com/rspxdp/rspxdp/internal/netns"
	"github.com/rspxdp/rspxdp/loader"
)

// TestDecapSharesInterface: two decapsulating PEs on one NIC (as two
// `rspxdp pe --decap` processes would be) share one program, which serves
// every PE address of the host, v4 and v6; a PE that leaves withdraws only
// the addresses no other PE needs, and the last one detaches the program.
func TestDecapSharesInterface(t *testing.T) {
	ns := netns.New(t, "decapshare")
	if _, _, err := netns.Veth(ns, "s0", ns, "s1"); err != nil {
		t.Fatal(err)
	}
	pe1v4, pe1v6 := netip.MustParseAddr("10.0.11.21"), netip.MustParseAddr("fd00:11::21")
	pe2v4, pe2v6 := netip.MustParseAddr("10.0.11.22"), netip.MustParseAddr("fd00:11::22")
	attached := func() ebpf.ProgramID {
		t.Helper()
		l, err := ns.Netlink().LinkByName("s0")
		if err != nil {
			t.Fatal(err)
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			return ebpf.ProgramID(x.ProgId)
		}
		return 0
	}
	// decapsulated reports whether the program on s0 strips a packet
	// encapsulated to dst.
	decapsulated := func(dst netip.Addr) bool {
		t.Helper()
		prog, err := ebpf.NewProgramFromID(attached())
		if err != nil {
			t.Fatal(err)
		}
		defer prog.Close()
		var in []byte
		if dst.Is4() {
			in = outer4(t, dst, layers.IPProtocolIPv4, innerTCP4(t))
		} else {
			in = outer6(t, dst, layers.IPProtocolIPv6, innerUDP6(t))
		}
		opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)}
		if _, err := prog.Run(&opts); err != nil {
			t.Fatal(err)
		}
		return len(opts.DataOut) < len(in)
	}
	open := func(addrs ...netip.Addr) *loader.Decap {
		t.Helper()
		var d *loader.Decap
		if err := ns.Do(func() (err error) {
			d, err = loader.OpenDecap(loader.DecapOptions{Addrs: addrs, Interfaces: []string{"s0"}, Mode: loader.ModeGeneric})
			return err
		}); err != nil {
			t.Fatalf("open decap for %v: %v", addrs, err)
		}
		return d
	}
	closeIn := func(d *loader.Decap) {
		t.Helper()
		if err := ns.Do(d.Close); err != nil {
			t.Fatal(err)
		}
	}

	d1 := open(pe1v4, pe1v6)
	first := attached()
	// The second PE also registered the host's shared v4 address.
	d2 := open(pe2v4, pe2v6, pe1v4)
	if got := attached(); got != first {
		t.Fatalf("the second PE replaced the program (%d -> %d)", first, got)
	}
	for _, a := range []netip.Addr{pe1v4, pe1v6, pe2v4, pe2v6} {
		if !decapsulated(a) {
			t.Errorf("%s not decapsulated with both PEs", a)
		}
	}
	if s, err := d2.Stats(); err != nil || s.DecapV4+s.DecapV6 == 0 {
		t.Errorf("the joining PE's stats miss the shared program's counters: %+v, %v", s, err)
	}

	closeIn(d1)
	if attached() != first {
		t.Fatal("the program left s0 although the second PE still uses it")
	}
	for a, want := range map[netip.Addr]bool{pe1v4: true, pe2v4: true, pe2v6: true, pe1v6: false} {
		if got := decapsulated(a); got != want {
			t.Errorf("after the first PE left: %s decapsulated %v, want %v", a, got, want)
		}
	}
	closeIn(d2)
	if id := attached(); id != 0 {
		t.Errorf("program %d still on s0 after the last PE left", id)
	}
}
