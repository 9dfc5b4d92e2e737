package loader

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// TestNetlinkResolver: next hops come from the kernel's routes and
// neighbour table: the PE itself on the link, or the route's gateway.
func TestNetlinkResolver(t *testing.T) {
	loadertestRoot(t)
	inNetns(t, func() {
		addVeth(t, "lbr0", "lbr1")
		l0, err := netlink.LinkByName("lbr0")
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []string{"10.9.0.1/24", "fc00:99::1/64"} {
			addr, _ := netlink.ParseAddr(a)
			addr.Flags = 0x02 // IFA_F_NODAD: usable at once
			if err := netlink.AddrAdd(l0, addr); err != nil {
				t.Fatalf("add %s: %v", a, err)
			}
		}
		peMAC := net.HardwareAddr{2, 0, 0, 0, 0, 0x22}
		gwMAC := net.HardwareAddr{2, 0, 0, 0, 0, 0x33}
		for _, n := range []struct {
			ip  string
			mac net.HardwareAddr
		}{{"10.9.0.2", peMAC}, {"10.9.0.254", gwMAC}, {"fc00:99::2", peMAC}} {
			fam := netlink.FAMILY_V4
			if netip.MustParseAddr(n.ip).Is6() {
				fam = netlink.FAMILY_V6
			}
			err := netlink.NeighAdd(&netlink.Neigh{LinkIndex: l0.Attrs().Index, Family: fam, State: netlink.NUD_PERMANENT,
				IP: net.ParseIP(n.ip), HardwareAddr: n.mac})
			if err != nil {
				t.Fatalf("add neighbour %s: %v", n.ip, err)
			}
		}
		_, dst, _ := net.ParseCIDR("10.10.0.0/24")
		if err := netlink.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP("10.9.0.254"), LinkIndex: l0.Attrs().Index}); err != nil {
			t.Fatalf("add route: %v", err)
		}
		r := NetlinkResolver{Timeout: 100 * time.Millisecond}
		for _, c := range []struct {
			pe   string
			want net.HardwareAddr
		}{{"10.9.0.2", peMAC}, {"10.10.0.5", gwMAC}, {"fc00:99::2", peMAC}} {
			hop, err := r.Resolve(netip.MustParseAddr(c.pe))
			if err != nil {
				t.Errorf("resolve %s: %v", c.pe, err)
				continue
			}
			if hop.Ifindex != l0.Attrs().Index || hop.DstMAC.String() != c.want.String() || hop.SrcMAC.String() != l0.Attrs().HardwareAddr.String() {
				t.Errorf("resolve %s: %+v, want ifindex %d dst %s src %s", c.pe, hop, l0.Attrs().Index, c.want, l0.Attrs().HardwareAddr)
			}
		}
		// Nobody answers for 10.9.0.77: an error, after the timeout.
		start := time.Now()
		if _, err := r.Resolve(netip.MustParseAddr("10.9.0.77")); err == nil {
			t.Error("resolved a neighbour that does not exist")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("unresolvable neighbour took %v", d)
		}
	})
}
