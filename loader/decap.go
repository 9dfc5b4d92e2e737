package loader

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

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
// concurrent use.
//
// One decapsulation program per interface serves every PE of the host: a
// Decap that finds another Decap's program on an interface (another PE
// process, say) joins it, adding its addresses to that program's address
// map, instead of failing with "file exists". The address map counts its
// users per address, so a PE that leaves removes only what no other PE
// needs, and the program is detached only by the last user of the
// interface. The attachment is not tied to the process that made it (so the
// other PEs keep decapsulating when it exits); a PE that is killed leaves
// its program and addresses behind, and the next PE on the interface joins
// them.
type Decap struct {
	logger *slog.Logger
	mode   Mode
	objs   bpf.DecapObjects

	mu     sync.Mutex
	links  map[string]decapLink           // by interface
	joined map[ebpf.ProgramID]*joinedProg // programs of other Decaps this one uses
	addrs  map[bpf.DecapDecapAddr]netip.Addr
}

// decapLink is one interface this Decap decapsulates on: with its own
// program (prog 0) or with a joined one.
type decapLink struct {
	ifindex int
	prog    ebpf.ProgramID // joined program, or 0 for this Decap's own
}

// joinedProg is another Decap's program and its maps.
type joinedProg struct {
	prog     *ebpf.Program
	addrs    *ebpf.Map
	counters *ebpf.Map
	users    int // interfaces of this Decap on it
}

// OpenDecap loads the decapsulation program, registers opts.Addrs and
// attaches it to opts.Interfaces (or joins the program already there).
func OpenDecap(opts DecapOptions) (*Decap, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	d := &Decap{logger: opts.Logger, mode: opts.Mode, links: map[string]decapLink{},
		joined: map[ebpf.ProgramID]*joinedProg{}, addrs: map[bpf.DecapDecapAddr]netip.Addr{}}
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

// addrMaps are the address maps this Decap's addresses belong in.
func (d *Decap) addrMaps() []*ebpf.Map {
	ms := []*ebpf.Map{d.objs.DecapAddrs}
	for _, j := range d.joined {
		ms = append(ms, j.addrs)
	}
	return ms
}

// addUser counts one more user of k in m.
func addUser(m *ebpf.Map, k bpf.DecapDecapAddr) error {
	var n uint8
	if err := m.Lookup(&k, &n); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	if n < 255 {
		n++
	}
	return m.Update(&k, n, ebpf.UpdateAny)
}

// dropUser counts one user of k less in m, removing k at zero.
func dropUser(m *ebpf.Map, k bpf.DecapDecapAddr) error {
	var n uint8
	if err := m.Lookup(&k, &n); errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if n > 1 {
		return m.Update(&k, n-1, ebpf.UpdateAny)
	}
	if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

// AddAddr makes packets encapsulated to a be decapsulated, on every
// interface of this Decap.
func (d *Decap) AddAddr(a netip.Addr) error {
	k, err := decapKey(a)
	if err != nil {
		return fmt.Errorf("add decap address %s: %w", a, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.addrs[k]; ok {
		return nil
	}
	for _, m := range d.addrMaps() {
		if err := addUser(m, k); err != nil {
			return fmt.Errorf("add decap address %s: %w", a, err)
		}
	}
	d.addrs[k] = a
	return nil
}

// RemoveAddr stops decapsulating packets sent to a (unless another PE on
// the same interface still needs it); they pass untouched.
func (d *Decap) RemoveAddr(a netip.Addr) error {
	k, err := decapKey(a)
	if err != nil {
		return fmt.Errorf("remove decap address %s: %w", a, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.addrs[k]; !ok {
		return fmt.Errorf("remove decap address %s: not added", a)
	}
	for _, m := range d.addrMaps() {
		if err := dropUser(m, k); err != nil {
			return fmt.Errorf("remove decap address %s: %w", a, err)
		}
	}
	delete(d.addrs, k)
	return nil
}

func (d *Decap) xdpFlags() []int {
	switch d.mode {
	case ModeNative:
		return []int{nl.XDP_FLAGS_DRV_MODE}
	case ModeGeneric:
		return []int{nl.XDP_FLAGS_SKB_MODE}
	}
	return []int{nl.XDP_FLAGS_DRV_MODE, nl.XDP_FLAGS_SKB_MODE}
}

// Attach decapsulates on an interface of the calling thread's network
// namespace: with the decapsulation program already attached there (joined:
// this Decap's addresses are added to its map), or else by attaching this
// Decap's own program in the configured mode.
func (d *Decap) Attach(ifname string) error {
	lnk, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("attach decap to %s: %w", ifname, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.links[ifname]; ok {
		return fmt.Errorf("attach decap to %s: already attached", ifname)
	}
	// Twice at most: a program another PE attaches between the look and
	// the attach is joined on the second round.
	for round := 0; round < 2; round++ {
		if x := lnk.Attrs().Xdp; x != nil && x.Attached && x.ProgId != 0 {
			return d.join(ifname, lnk.Attrs().Index, ebpf.ProgramID(x.ProgId))
		}
		var errs []error
		for i, flags := range d.xdpFlags() {
			err := netlink.LinkSetXdpFdWithFlags(lnk, d.objs.DecapXdp.FD(), flags|nl.XDP_FLAGS_UPDATE_IF_NOEXIST)
			if err == nil {
				d.links[ifname] = decapLink{ifindex: lnk.Attrs().Index}
				return nil
			}
			errs = append(errs, err)
			if i == 0 && len(d.xdpFlags()) > 1 && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.EEXIST) {
				d.logger.Warn("native XDP attach failed, falling back to generic mode (slower: runs after skb allocation)",
					"interface", ifname, "err", err)
			}
		}
		if lnk, err = netlink.LinkByName(ifname); err != nil {
			return fmt.Errorf("attach decap to %s: %w", ifname, err)
		}
		if x := lnk.Attrs().Xdp; x == nil || !x.Attached {
			return fmt.Errorf("attach decap to %s: %w", ifname, errors.Join(errs...))
		}
	}
	return fmt.Errorf("attach decap to %s: the interface's XDP program keeps changing", ifname)
}

// join uses the decapsulation program id found on an interface.
func (d *Decap) join(ifname string, ifindex int, id ebpf.ProgramID) error {
	if own, err := d.objs.DecapXdp.Info(); err == nil {
		if oid, ok := own.ID(); ok && oid == id {
			d.links[ifname] = decapLink{ifindex: ifindex}
			return nil
		}
	}
	j := d.joined[id]
	if j == nil {
		var err error
		if j, err = openDecapProg(id); err != nil {
			return fmt.Errorf("attach decap to %s: %w", ifname, err)
		}
		for k, a := range d.addrs {
			if err := addUser(j.addrs, k); err != nil {
				j.close()
				return fmt.Errorf("attach decap to %s: add %s to the program there: %w", ifname, a, err)
			}
		}
		d.joined[id] = j
	}
	j.users++
	d.links[ifname] = decapLink{ifindex: ifindex, prog: id}
	d.logger.Info("decapsulation program already on the interface: sharing it", "interface", ifname, "prog_id", id)
	return nil
}

// openDecapProg opens another Decap's program and its maps by id; anything
// but rspxdp's decapsulation program is refused, naming it.
func openDecapProg(id ebpf.ProgramID) (*joinedProg, error) {
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return nil, fmt.Errorf("open XDP program %d: %w", id, err)
	}
	j := &joinedProg{prog: prog}
	info, err := prog.Info()
	if err == nil && info.Name != "decap_xdp" {
		err = fmt.Errorf("the interface has another XDP program attached (%q, id %d)", info.Name, id)
	}
	if err != nil {
		j.close()
		return nil, err
	}
	ids, _ := info.MapIDs()
	for _, mid := range ids {
		m, err := ebpf.NewMapFromID(mid)
		if err != nil {
			continue
		}
		mi, err := m.Info()
		switch {
		case err == nil && mi.Name == "decap_addrs" && j.addrs == nil:
			j.addrs = m
		case err == nil && mi.Name == "decap_counters" && j.counters == nil:
			j.counters = m
		default:
			m.Close()
		}
	}
	if j.addrs == nil {
		j.close()
		return nil, fmt.Errorf("XDP program %d has no decap_addrs map", id)
	}
	return j, nil
}

func (j *joinedProg) close() {
	j.prog.Close()
	if j.addrs != nil {
		j.addrs.Close()
	}
	if j.counters != nil {
		j.counters.Close()
	}
}

// Detach stops decapsulating on an interface. The program is removed from
// it only when no other PE's address is left in its map.
func (d *Decap) Detach(ifname string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.detachLocked(ifname)
}

func (d *Decap) detachLocked(ifname string) error {
	l, ok := d.links[ifname]
	if !ok {
		return fmt.Errorf("detach decap from %s: not attached", ifname)
	}
	delete(d.links, ifname)
	if l.prog != 0 {
		j := d.joined[l.prog]
		if j.users--; j.users > 0 {
			return nil
		}
		delete(d.joined, l.prog)
		defer j.close()
		for k := range d.addrs {
			if err := dropUser(j.addrs, k); err != nil {
				return fmt.Errorf("detach decap from %s: %w", ifname, err)
			}
		}
		return detachIfUnused(ifname, l.ifindex, l.prog, j.addrs, nil)
	}
	id := ebpf.ProgramID(0)
	if info, err := d.objs.DecapXdp.Info(); err == nil {
		id, _ = info.ID()
	}
	return detachIfUnused(ifname, l.ifindex, id, d.objs.DecapAddrs, d.addrs)
}

// detachIfUnused removes program id from the interface unless its address
// map holds an address another user needs: one not in ours, or counted
// more than once.
func detachIfUnused(ifname string, ifindex int, id ebpf.ProgramID, addrs *ebpf.Map, ours map[bpf.DecapDecapAddr]netip.Addr) error {
	var k bpf.DecapDecapAddr
	var n uint8
	it := addrs.Iterate()
	for it.Next(&k, &n) {
		if _, mine := ours[k]; !mine || n > 1 {
			return nil // another PE still uses it
		}
	}
	lnk, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return nil // the interface is gone, and the program with it
	}
	x := lnk.Attrs().Xdp
	if x == nil || !x.Attached || ebpf.ProgramID(x.ProgId) != id {
		return nil // someone else's program now
	}
	flags := nl.XDP_FLAGS_DRV_MODE
	if x.AttachMode == nl.XDP_ATTACHED_SKB {
		flags = nl.XDP_FLAGS_SKB_MODE
	}
	if err := netlink.LinkSetXdpFdWithFlags(lnk, -1, flags); err != nil {
		return fmt.Errorf("detach decap from %s: %w", ifname, err)
	}
	return nil
}

// Stats reads the counters of the programs this Decap uses: its own and
// those it joined (which count the other PEs' packets too).
func (d *Decap) Stats() (DecapStats, error) {
	d.mu.Lock()
	maps := []*ebpf.Map{d.objs.DecapCounters}
	for _, j := range d.joined {
		if j.counters != nil {
			maps = append(maps, j.counters)
		}
	}
	d.mu.Unlock()
	var per []bpf.DecapDecapStats
	for _, m := range maps {
		var one []bpf.DecapDecapStats
		if err := m.Lookup(uint32(0), &one); err != nil {
			return DecapStats{}, fmt.Errorf("read decap counters: %w", err)
		}
		per = append(per, one...)
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

// Close stops decapsulating on every interface (the program stays where
// another PE still uses it), withdraws this Decap's addresses and unloads
// what no one uses.
func (d *Decap) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	// Own attachments go last: their map keeps this Decap's addresses,
	// which only the detach check must see as "ours".
	for name, l := range d.links {
		if l.prog != 0 {
			errs = append(errs, d.detachLocked(name))
		}
	}
	for k := range d.addrs {
		if err := dropUser(d.objs.DecapAddrs, k); err != nil {
			errs = append(errs, fmt.Errorf("withdraw decap address: %w", err))
		}
	}
	for name := range d.links {
		errs = append(errs, d.detachLocked(name))
	}
	for _, j := range d.joined {
		j.close()
	}
	d.joined = map[ebpf.ProgramID]*joinedProg{}
	if err := d.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close decap objects: %w", err))
	}
	return errors.Join(errs...)
}
