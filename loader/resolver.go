package loader

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
)

// NextHop is where the data path sends a PE's packets: out of Ifindex, from
// SrcMAC to DstMAC (the gateway's, or the PE's when it is on the link).
type NextHop struct {
	Ifindex int
	SrcMAC  net.HardwareAddr
	DstMAC  net.HardwareAddr
}

// Resolver finds the next hop towards a PE.
type Resolver interface {
	Resolve(pe netip.Addr) (NextHop, error)
}

// StaticResolver answers from a fixed table; for tests and for operators
// who pin next hops by hand.
type StaticResolver map[netip.Addr]NextHop

// Resolve implements Resolver.
func (s StaticResolver) Resolve(pe netip.Addr) (NextHop, error) {
	if h, ok := s[pe]; ok {
		return h, nil
	}
	if h, ok := s[netip.Addr{}]; ok { // catch-all entry
		return h, nil
	}
	return NextHop{}, fmt.Errorf("no static next hop for %s", pe)
}

// NetlinkResolver asks the kernel: the route to the PE gives the egress
// interface and gateway, the neighbour table the gateway's MAC. A missing
// neighbour entry is solicited by sending one empty UDP datagram to the
// discard port, then awaited for up to Timeout (default 1s).
type NetlinkResolver struct {
	Timeout time.Duration
}

// Resolve implements Resolver.
func (r NetlinkResolver) Resolve(pe netip.Addr) (NextHop, error) {
	routes, err := netlink.RouteGet(pe.AsSlice())
	if err != nil || len(routes) == 0 {
		return NextHop{}, fmt.Errorf("route to %s: %w", pe, err)
	}
	rt := routes[0]
	link, err := netlink.LinkByIndex(rt.LinkIndex)
	if err != nil {
		return NextHop{}, fmt.Errorf("link %d of route to %s: %w", rt.LinkIndex, pe, err)
	}
	hop := pe
	if rt.Gw != nil {
		gw, ok := netip.AddrFromSlice(rt.Gw)
		if !ok {
			return NextHop{}, fmt.Errorf("route to %s: bad gateway %v", pe, rt.Gw)
		}
		hop = gw.Unmap()
	}
	timeout := r.Timeout
	if timeout == 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	solicited := false
	for {
		mac, err := neighbour(rt.LinkIndex, hop)
		if err == nil {
			return NextHop{Ifindex: rt.LinkIndex, SrcMAC: link.Attrs().HardwareAddr, DstMAC: mac}, nil
		}
		if !solicited {
			solicited = true
			if c, err := net.Dial("udp", netip.AddrPortFrom(hop, 9).String()); err == nil {
				c.Write(nil)
				c.Close()
			}
		}
		select {
		case <-ctx.Done():
			return NextHop{}, fmt.Errorf("neighbour %s of %s on %s: %w", hop, pe, link.Attrs().Name, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

var errNoNeighbour = errors.New("no usable neighbour entry")

func neighbour(ifindex int, ip netip.Addr) (net.HardwareAddr, error) {
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	neighs, err := netlink.NeighList(ifindex, family)
	if err != nil {
		return nil, fmt.Errorf("list neighbours: %w", err)
	}
	for _, n := range neighs {
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok || a.Unmap() != ip {
			continue
		}
		if n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED|netlink.NUD_NOARP) != 0 || len(n.HardwareAddr) != 6 {
			continue
		}
		return n.HardwareAddr, nil
	}
	return nil, errNoNeighbour
}
