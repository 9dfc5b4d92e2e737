package loader

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/rspxdp/rspxdp/bpf"
)

// DecapOptions configure OpenDecap.
type DecapOptions struct {
	// Addrs are the PE's own addresses: only packets whose outer header is
	// addressed to one of them are decapsulated. Typically the addresses
	// the PE registered with, which the load balancer encapsulates to.
	Addrs []netip.Addr
	// Interfaces to attach to; more can be added with Attach.
	Interfaces []string
	// Mode of attachment (ModeAuto: native, falling back to generic).
	Mode Mode
	// Logger receives the warning of a fall back to generic mode.
	Logger *slog.Logger
}

// DecapStats are the decapsulation program's counters, summed over CPUs.
type DecapStats struct {
	// DecapV4 and DecapV6 count packets whose outer IPv4 or IPv6 header
	// was stripped; Bytes counts their inner (L3) bytes.
	DecapV4, DecapV6, Bytes uint64
	// Passed counts packets that were not encapsulated for this PE and
	// went on untouched.
	Passed uint64
	// DropBad counts encapsulated packets for this PE with a truncated or
	// mismatched inner header; DropFrag fragmented outer IPv4 packets.
	DropBad, DropFrag uint64
}

// Decap is the PE side of rspxdp's encapsulating forwarding (bpf/decap.c):
// it strips the IPIP or IPv6-in-IPv6 header the load balancer added, so the
// inner packet, addressed to a VIP on the PE's loopback, reaches the local
// stack and the reply goes straight to the client. It stands in for an
// ipip/ip6tnl device on kernels that have none. Its methods are safe for
// concurrent use. Links are not pinned: the program stays attached as long
// as the Decap is open.
type Decap struct {
	logger *slog.Logger
	mode   Mode
	objs   bpf.DecapObjects

	mu    sync.Mutex
	links map[string]link.Link
}

// OpenDecap loads the decapsulation program, registers opts.Addrs and
// attaches it to opts.Interfaces.
func OpenDecap(opts DecapOptions) (*Decap, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	d := &Decap{logger: opts.Logger, mode: opts.Mode, links: map[string]link.Link{}}
	if err := bpf.LoadDecapObjects(&d.objs, nil); err != nil {
		return nil, fmt.Errorf("load decap objects: %w", err)
	}
	for _, a := range opts.Addrs {
		if err := d.AddAddr(a); err != nil {
			d.Close()
			return nil, err
		}
	}
	for _, ifname := range opts.Interfaces {
		if err := d.Attach(ifname); err != nil {
			d.Close()
			return nil, err
		}
	}
	return d, nil
}

func decapKey(a netip.Addr) (bpf.DecapDecapAddr, error) {
	a = a.Unmap()
	if !a.IsValid() {
		return bpf.DecapDecapAddr{}, errors.New("invalid address")
	}
	k := bpf.DecapDecapAddr{W: addrWords(a), Family: 6}
	if a.Is4() {
		k.Family = 4
	}
	return k, nil
}

// AddAddr makes packets encapsulated to a be decapsulated.
func (d *Decap) AddAddr(a netip.Addr) error {
	k, err := decapKey(a)
	if err != nil {
		return fmt.Errorf("add decap address %s: %w", a, err)
	}
	if err := d.objs.DecapAddrs.Update(&k, uint8(1), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("add decap address %s: %w", a, err)
	}
	return nil
}

// RemoveAddr stops decapsulating packets sent to a; they pass untouched.
func (d *Decap) RemoveAddr(a netip.Addr) error {
	k, err := decapKey(a)
	if err != nil {
		return fmt.Errorf("remove decap address %s: %w", a, err)
	}
	if err := d.objs.DecapAddrs.Delete(&k); err != nil {
		return fmt.Errorf("remove decap address %s: %w", a, err)
	}
	return nil
}

// Attach attaches the program to an interface of the calling thread's
// network namespace, in the configured mode.
func (d *Decap) Attach(ifname string) error {
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("attach decap to %s: %w", ifname, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.links[ifname]; ok {
		return fmt.Errorf("attach decap to %s: already attached", ifname)
	}
	try := func(flags link.XDPAttachFlags) (link.Link, error) {
		return link.AttachXDP(link.XDPOptions{Program: d.objs.DecapXdp, Interface: iface.Index, Flags: flags})
	}
	var lk link.Link
	switch d.mode {
	case ModeNative:
		lk, err = try(link.XDPDriverMode)
	case ModeGeneric:
		lk, err = try(link.XDPGenericMode)
	default:
		lk, err = try(link.XDPDriverMode)
		if err != nil {
			d.logger.Warn("native XDP attach failed, falling back to generic mode (slower: runs after skb allocation)",
				"interface", ifname, "err", err)
			lk, err = try(link.XDPGenericMode)
		}
	}
	if err != nil {
		return fmt.Errorf("attach decap to %s: %w", ifname, err)
	}
	d.links[ifname] = lk
	return nil
}

// Detach removes the program from an interface.
func (d *Decap) Detach(ifname string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	lk, ok := d.links[ifname]
	if !ok {
		return fmt.Errorf("detach decap from %s: not attached", ifname)
	}
	delete(d.links, ifname)
	if err := lk.Close(); err != nil {
		return fmt.Errorf("detach decap from %s: %w", ifname, err)
	}
	return nil
}

// Stats reads the counters.
func (d *Decap) Stats() (DecapStats, error) {
	var per []bpf.DecapDecapStats
	if err := d.objs.DecapCounters.Lookup(uint32(0), &per); err != nil {
		return DecapStats{}, fmt.Errorf("read decap counters: %w", err)
	}
	var s DecapStats
	for _, c := range per {
		s.DecapV4 += c.DecapV4
		s.DecapV6 += c.DecapV6
		s.Bytes += c.DecapBytes
		s.Passed += c.Pass
		s.DropBad += c.DropBad
		s.DropFrag += c.DropFrag
	}
	return s, nil
}

// Program returns the decapsulation program, for tests that run it with
// BPF_PROG_TEST_RUN.
func (d *Decap) Program() *ebpf.Program { return d.objs.DecapXdp }

// Close detaches the program from every interface and unloads it.
func (d *Decap) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for name, lk := range d.links {
		if err := lk.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach decap from %s: %w", name, err))
		}
	}
	d.links = map[string]link.Link{}
	if err := d.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close decap objects: %w", err))
	}
	return errors.Join(errs...)
}
