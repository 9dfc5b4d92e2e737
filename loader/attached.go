package loader

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// Attached checks that the load balancer is the XDP program of every
// configured interface right now (an interface can be deleted, or its
// program replaced, behind the loader's back). It names the first
// interface where it is not. A node withdraws its BGP announcements while
// this fails: traffic attracted there would not be balanced.
func (l *Loader) Attached() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.objs.LbXdp == nil {
		return fmt.Errorf("data plane closed")
	}
	info, err := l.objs.LbXdp.Info()
	if err != nil {
		return fmt.Errorf("program info: %w", err)
	}
	want, _ := info.ID()
	for _, ifname := range l.opts.Interfaces {
		lk, err := netlink.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("interface %s: %w", ifname, err)
		}
		x := lk.Attrs().Xdp
		if x == nil || !x.Attached {
			return fmt.Errorf("interface %s: no XDP program attached", ifname)
		}
		if x.ProgId != uint32(want) {
			return fmt.Errorf("interface %s: XDP program %d attached, not the load balancer (%d)", ifname, x.ProgId, want)
		}
	}
	return nil
}
