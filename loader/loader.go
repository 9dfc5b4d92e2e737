// Package loader loads rspxdp's XDP load balancer (bpf/lb.c), attaches it to
// interfaces, pins its maps and links under a bpffs directory, and is the only
// code that writes its maps: virtual services, pool elements with their
// weights and states, and the Maglev rings built from them.
//
// A Loader opened on a pin directory that already holds state takes it over
// (maps, rings, connection table, links), so the control plane can restart
// without dropping a single established flow.
package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/rspxdp/rspxdp/bpf"
	"github.com/rspxdp/rspxdp/loader/maglev"
)

// DefaultPinDir is where maps and links are pinned unless Options say
// otherwise.
const DefaultPinDir = "/sys/fs/bpf/rspxdp"

// DefaultSeed is the flow hash seed used when none is configured. Any value
// works as long as every node of a registrar pool uses the same one.
const DefaultSeed uint32 = 0x52535058 // "RSPX"

// Defaults for the sizes that Options leave zero.
const (
	// DefaultConnTableSize is Katran's default capacity: an edge balancer
	// keeps millions of flows. Open lowers it on a host with little memory
	// (see connTableDefault) and logs the size it uses.
	DefaultConnTableSize = 8_000_000
	// DefaultFloodLimit is the flood guard's new flows per second and CPU,
	// Katran's default: past it new flows are forwarded by the Maglev hash
	// alone, so a SYN flood neither pays for table inserts nor evicts the
	// established flows.
	DefaultFloodLimit  = 125_000
	DefaultMTU         = 1500
	DefaultMaxServices = 1024
	DefaultMaxBackends = 16384
	// MaxBackendsLimit is the most PE slots Options.MaxBackends may ask
	// for: ring slots hold 16-bit slot numbers (bpf/lb.h, ring_slots).
	MaxBackendsLimit = 1 << 16
)

// NoFloodLimit as Options.FloodLimit turns the flood guard off.
const NoFloodLimit = math.MaxUint32

// ConnBytesPerFlow is what one connection table entry costs in kernel
// memory, measured (BenchmarkConnTableCapacity: the table's memlock over its
// capacity): the kernel's hash element header, the 24-byte key, the 8-byte
// value, the bucket and LRU overhead.
const ConnBytesPerFlow = 97

// Per-flow outer sources used when Options give no source address: the
// prefixes Katran uses (RFC 6666's discard-only 100::/64 for IPv6).
var (
	DefaultSourcePrefixV4 = netip.MustParsePrefix("172.16.0.0/16")
	DefaultSourcePrefixV6 = netip.MustParsePrefix("100::/64")
)

// MaxControlPorts is how many ControlPorts the data path checks.
const MaxControlPorts = 4

// Mode says how the program is attached to an interface.
type Mode int

const (
	// ModeAuto tries native (driver) mode and falls back to generic mode
	// with a warning.
	ModeAuto Mode = iota
	// ModeNative insists on driver mode.
	ModeNative
	// ModeGeneric uses generic (skb) mode, which every interface supports.
	ModeGeneric
)

// DefaultConnTable is the LRU flavour used unless Options say otherwise.
const DefaultConnTable = ConnTablePerCPULRU

// ConnTable selects the LRU flavour of the connection table.
type ConnTable int

const (
	// ConnTablePerCPULRU, the default, keeps one hash table shared by all
	// CPUs (a flow's entry is found whichever CPU gets its next packet) but
	// per-CPU LRU lists (BPF_F_NO_COMMON_LRU): creating an entry takes no
	// cross-CPU lock and evicts from the local list. Measured here (see
	// BenchmarkLb) it creates entries markedly cheaper than the global list
	// once the table is full, and costs the same on hits. Each CPU then
	// holds at most its share of the entries.
	ConnTablePerCPULRU ConnTable = iota
	// ConnTableGlobal is one LRU list shared by all CPUs.
	ConnTableGlobal
)

// Options configure Open. Zero values mean the documented defaults.
type Options struct {
	// PinDir is the bpffs directory for maps and links (DefaultPinDir).
	// When it is under /sys/fs/bpf and that is not mounted, Open mounts it.
	PinDir string
	// Interfaces to attach the program to; none means load only.
	Interfaces []string
	// Mode of attachment.
	Mode Mode
	// TableSize is the Maglev ring size, a prime (maglev.DefaultSize).
	TableSize uint32
	// Seed of the flow hash (DefaultSeed).
	Seed uint32
	// ConnTableSize is the connection table's capacity (DefaultConnTableSize,
	// or an eighth of the host's memory if that is less). The table is
	// allocated up front: ConnBytesPerFlow bytes per entry.
	ConnTableSize uint32
	// ConnTable selects the LRU flavour.
	ConnTable ConnTable
	// MaxServices and MaxBackends size the service and PE tables
	// (MaxBackends at most MaxBackendsLimit).
	MaxServices, MaxBackends uint32
	// FloodLimit is the number of new flows per second and CPU past which
	// new flows are forwarded without a connection entry
	// (DefaultFloodLimit); NoFloodLimit disables the guard.
	FloodLimit uint32
	// MTU of the egress link: encapsulated packets that would exceed it are
	// dropped and counted (DefaultMTU).
	MTU uint32
	// SourceV4 and SourceV6 are fixed outer source addresses of IPIP and
	// IPv6 encapsulation. When one is not set, the outer source of that
	// family varies per flow within SourcePrefixV4 / SourcePrefixV6.
	SourceV4, SourceV6 netip.Addr
	// SourcePrefixV4 and SourcePrefixV6 hold the per-flow outer sources
	// (DefaultSourcePrefixV4, DefaultSourcePrefixV6): the host bits come
	// from the client's address and port, so a PE's NIC, which hashes the
	// outer header for RSS, spreads the flows over its receive queues. The
	// PE must accept tunnel packets from any source (bpf/decap.c does; a
	// kernel ipip/ip6tnl device needs remote any and rp_filter off or
	// loose). An IPv6 prefix must be /64 or longer.
	SourcePrefixV4, SourcePrefixV6 netip.Prefix
	// Redirect sends every packet with XDP_REDIRECT through a device map to
	// the interface of its PE's route. Without it that happens only when the
	// route leaves by another interface than the packet arrived on (the
	// others go back out with XDP_TX), which is what every topology needs.
	Redirect bool
	// ControlPorts are destination ports (TCP, UDP and SCTP) that packets
	// arriving on the program's interfaces may only reach from
	// ControlNetworks: the registrar's ASAP and ENRP ports, so that the
	// client side can never register, resolve or peer. At most
	// MaxControlPorts; none disables the filter. Packets to a VIP are
	// steered whatever their port.
	ControlPorts []uint16
	// ControlNetworks are the sources allowed to reach ControlPorts through
	// the program's interfaces (none: no one).
	ControlNetworks []netip.Prefix
	// Resolver finds each PE's next hop; nil means the kernel's routing
	// and neighbour tables (NetlinkResolver).
	Resolver Resolver
	// Logger receives warnings such as the fall back to generic mode.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.PinDir == "" {
		o.PinDir = DefaultPinDir
	}
	if o.TableSize == 0 {
		o.TableSize = maglev.DefaultSize
	}
	if o.Seed == 0 {
		o.Seed = DefaultSeed
	}
	if o.ConnTableSize == 0 {
		o.ConnTableSize = connTableDefault(memTotal())
	}
	if o.FloodLimit == 0 {
		o.FloodLimit = DefaultFloodLimit
	}
	if !o.SourcePrefixV4.IsValid() {
		o.SourcePrefixV4 = DefaultSourcePrefixV4
	}
	if !o.SourcePrefixV6.IsValid() {
		o.SourcePrefixV6 = DefaultSourcePrefixV6
	}
	if o.MaxServices == 0 {
		o.MaxServices = DefaultMaxServices
	}
	if o.MaxBackends == 0 {
		o.MaxBackends = DefaultMaxBackends
	}
	if o.MTU == 0 {
		o.MTU = DefaultMTU
	}
	if o.Resolver == nil {
		o.Resolver = NetlinkResolver{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Loader owns the loaded program, its maps and links. Its methods are safe
// for concurrent use.
type Loader struct {
	opts  Options
	objs  bpf.LbObjects
	inner *ebpf.MapSpec // template of a Maglev ring
	links map[string]link.Link
	fresh []link.Link // attached by Open itself, undone if Open fails
	ncpu  int
	// adopted: the pin directory held an earlier run's state at Open.
	adopted bool

	mu       sync.Mutex
	services map[ServiceKey]*service
	svcFree  idPool
	beFree   idPool
	txPorts  map[int]uint16 // ifindex -> lb_tx_ports slot
}

// Open loads the program, creating or re-opening its pinned maps in
// opts.PinDir, and attaches it to opts.Interfaces (replacing the program of
// a pinned link left by a previous run, which keeps the attachment).
func Open(opts Options) (*Loader, error) {
	opts.setDefaults()
	if !maglev.IsPrime(opts.TableSize) {
		return nil, fmt.Errorf("table size %d is not prime", opts.TableSize)
	}
	if opts.MaxBackends > MaxBackendsLimit {
		return nil, fmt.Errorf("%d PE slots: at most %d (a Maglev ring slot holds a 16-bit slot number)", opts.MaxBackends, MaxBackendsLimit)
	}
	if len(opts.ControlPorts) > MaxControlPorts {
		return nil, fmt.Errorf("%d control ports: at most %d", len(opts.ControlPorts), MaxControlPorts)
	}
	if p := opts.SourcePrefixV4; !p.Addr().Is4() {
		return nil, fmt.Errorf("outer source prefix %s is not IPv4", p)
	}
	if p := opts.SourcePrefixV6; !p.Addr().Is6() || p.Addr().Is4In6() || p.Bits() < 64 {
		return nil, fmt.Errorf("outer source prefix %s is not an IPv6 prefix of /64 or longer", p)
	}
	if err := ensureBPFFS(opts.PinDir); err != nil {
		return nil, err
	}
	// What the pin directory held before: a failed Open removes exactly
	// what it added, so a failed start leaves nothing pinned, while a
	// previous run's state (kept with keep-on-exit) stays as it was found.
	before, err := pinsIn(opts.PinDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.PinDir, 0o700); err != nil {
		return nil, fmt.Errorf("create pin dir: %w", err)
	}
	undoPins := func() {
		if err := removeNewPins(opts.PinDir, before); err != nil {
			opts.Logger.Warn("failed start: remove pins", "pin_dir", opts.PinDir, "err", err)
		}
	}
	l, err := open(opts)
	if err != nil {
		undoPins()
		return nil, err
	}
	l.adopted = len(before) > 0
	return l, nil
}

// Adopted reports whether Open found pinned state of an earlier run in the
// pin directory (and took it over).
func (l *Loader) Adopted() bool { return l.adopted }

// pinsIn lists the entries of a pin directory; nil if it does not exist.
func pinsIn(dir string) (map[string]bool, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pin dir: %w", err)
	}
	m := make(map[string]bool, len(ents))
	for _, e := range ents {
		m[e.Name()] = true
	}
	return m, nil
}

// removeNewPins unpins every entry of dir not in before, and dir itself when
// it did not exist before (before == nil) and is then empty.
func removeNewPins(dir string, before map[string]bool) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read pin dir: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if !before[e.Name()] {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if before == nil {
		if err := os.Remove(dir); err != nil && !errors.Is(err, unix.ENOTEMPTY) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func open(opts Options) (*Loader, error) {
	spec, err := bpf.LoadLb()
	if err != nil {
		return nil, fmt.Errorf("load lb spec: %w", err)
	}
	for name, m := range spec.Maps {
		m.Pinning = ebpf.PinByName
		switch name {
		case bpf.LbMapLbServices, bpf.LbMapLbRings, bpf.LbMapLbVipStats:
			m.MaxEntries = opts.MaxServices
		case bpf.LbMapLbBackends, bpf.LbMapLbPeStats:
			m.MaxEntries = opts.MaxBackends
		case bpf.LbMapLbConns:
			m.MaxEntries = opts.ConnTableSize
			if opts.ConnTable == ConnTablePerCPULRU {
				m.Flags |= unix.BPF_F_NO_COMMON_LRU
			}
		}
	}
	ring := spec.Maps[bpf.LbMapLbRings].InnerMap
	ring.MaxEntries = ringEntries(opts.TableSize)
	if err := checkPinnedRings(opts.PinDir, ring.ValueSize); err != nil {
		return nil, err
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count CPUs: %w", err)
	}
	l := &Loader{
		opts:     opts,
		inner:    ring.Copy(),
		links:    map[string]link.Link{},
		ncpu:     ncpu,
		services: map[ServiceKey]*service{},
		svcFree:  newIDPool(0, opts.MaxServices),
		beFree:   newIDPool(1, opts.MaxBackends),
		txPorts:  map[int]uint16{},
	}
	l.inner.Name = "lb_ring"
	flavour := "per-CPU LRU"
	if opts.ConnTable == ConnTableGlobal {
		flavour = "shared LRU"
	}
	opts.Logger.Info("connection table", "flows", opts.ConnTableSize, "lru", flavour,
		"memory_mib", uint64(opts.ConnTableSize)*ConnBytesPerFlow>>20)
	err = spec.LoadAndAssign(&l.objs, &ebpf.CollectionOptions{
		Maps: ebpf.MapOptions{PinPath: opts.PinDir},
	})
	if err != nil {
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("pinned maps in %s were made with other sizes or table kind (remove them or use the same options): %w", opts.PinDir, err)
		}
		return nil, fmt.Errorf("load lb objects: %w", err)
	}
	if err := l.writeConfig(); err != nil {
		l.objs.Close()
		return nil, err
	}
	if err := l.restore(); err != nil {
		l.objs.Close()
		return nil, fmt.Errorf("restore state from %s: %w", opts.PinDir, err)
	}
	for _, ifname := range opts.Interfaces {
		if err := l.attach(ifname); err != nil {
			// Undo only what this call attached; links taken over from
			// a previous run stay as they were found.
			for _, lk := range l.fresh {
				lk.Unpin()
			}
			l.closeFDs()
			return nil, err
		}
	}
	l.fresh = nil
	return l, nil
}

// writeConfig writes lb_config, keeping the table size of pinned state: the
// rings already in lb_rings have that size.
func (l *Loader) writeConfig() error {
	var old bpf.LbConfig
	if err := l.objs.LbConfig.Lookup(uint32(0), &old); err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if old.RingSize != 0 && old.RingSize != l.opts.TableSize {
		return fmt.Errorf("pinned state in %s uses table size %d, not %d", l.opts.PinDir, old.RingSize, l.opts.TableSize)
	}
	cfg := bpf.LbConfig{
		Seed:       l.opts.Seed,
		RingSize:   l.opts.TableSize,
		FloodLimit: l.opts.FloodLimit,
		Mtu:        l.opts.MTU,
	}
	if cfg.FloodLimit == NoFloodLimit {
		cfg.FloodLimit = 0
	}
	if l.opts.Redirect {
		cfg.Flags |= 1 // CFG_F_REDIRECT
	}
	if l.opts.SourceV4.IsValid() {
		cfg.SrcV4 = addrWords(l.opts.SourceV4)[0]
	} else {
		p := l.opts.SourcePrefixV4.Masked()
		cfg.SrcV4 = addrWords(p.Addr())[0]
		cfg.SrcV4Mask = hostMask(p)[0]
	}
	if l.opts.SourceV6.IsValid() {
		cfg.SrcV6.W = addrWords(l.opts.SourceV6)
	} else {
		p := l.opts.SourcePrefixV6.Masked()
		cfg.SrcV6.W = addrWords(p.Addr())
		cfg.SrcV6Mask.W = hostMask(p)
	}
	for i, p := range l.opts.ControlPorts {
		cfg.CtrlPorts[i] = htons(p)
	}
	if err := l.objs.LbConfig.Update(uint32(0), &cfg, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return l.writeControlNetworks(l.opts.ControlNetworks)
}

// SetControlNetworks replaces the sources allowed to reach the control
// ports (on a configuration reload). The new set is added before the old
// one is removed, so a network in both is never refused in between.
func (l *Loader) SetControlNetworks(nets []netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writeControlNetworks(nets); err != nil {
		return err
	}
	l.opts.ControlNetworks = slices.Clone(nets)
	return nil
}

func ctrlKey(p netip.Prefix) bpf.LbCtrlKey {
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	// The 16 bytes as the data path reads them: IPv4 as ::ffff:a.b.c.d.
	b := p.Addr().As16()
	k := bpf.LbCtrlKey{Prefixlen: uint32(bits)}
	for i := range k.Addr.W {
		k.Addr.W[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return k
}

func (l *Loader) writeControlNetworks(nets []netip.Prefix) error {
	want := map[bpf.LbCtrlKey]bool{}
	for _, p := range nets {
		if !p.IsValid() {
			return fmt.Errorf("control network %s: invalid prefix", p)
		}
		k := ctrlKey(p)
		want[k] = true
		if err := l.objs.LbCtrlAllow.Update(&k, uint8(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("add control network %s: %w", p, err)
		}
	}
	var stale []bpf.LbCtrlKey
	var k bpf.LbCtrlKey
	var v uint8
	it := l.objs.LbCtrlAllow.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read control networks: %w", err)
	}
	for _, k := range stale {
		if err := l.objs.LbCtrlAllow.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove control network: %w", err)
		}
	}
	return nil
}

// hostMask is the host part of prefix p as addrWords lays an address out.
func hostMask(p netip.Prefix) [4]uint32 {
	var b [16]byte
	n := p.Addr().BitLen()
	for i := p.Bits(); i < n; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a := netip.AddrFrom16(b)
	if n == 32 {
		a = netip.AddrFrom4([4]byte(b[:4]))
	}
	return addrWords(a)
}

// connTableDefault is DefaultConnTableSize, or as many flows as an eighth
// of memTotal bytes holds if that is fewer (never under 262,144).
func connTableDefault(memTotal uint64) uint32 {
	n := memTotal / 8 / ConnBytesPerFlow
	switch {
	case memTotal == 0 || n >= DefaultConnTableSize:
		return DefaultConnTableSize
	case n < 1<<18:
		return 1 << 18
	}
	return uint32(n)
}

// memTotal is the host's memory in bytes, 0 if unknown.
func memTotal() uint64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0
	}
	return uint64(si.Totalram) * uint64(si.Unit)
}

func (l *Loader) attach(ifname string) error {
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("attach to %s: %w", ifname, err)
	}
	pin := filepath.Join(l.opts.PinDir, "link_"+ifname)
	if old, err := link.LoadPinnedLink(pin, nil); err == nil {
		// A previous run left the program attached: swap in this one
		// atomically, so not a packet goes unsteered.
		if err := old.Update(l.objs.LbXdp); err != nil {
			old.Close()
			return fmt.Errorf("update pinned link on %s: %w", ifname, err)
		}
		l.links[ifname] = old
		l.opts.Logger.Info("XDP program attached", "interface", ifname, "mode", "kept from the previous run (pinned link updated)")
		return nil
	}
	try := func(flags link.XDPAttachFlags) (link.Link, error) {
		return link.AttachXDP(link.XDPOptions{Program: l.objs.LbXdp, Interface: iface.Index, Flags: flags})
	}
	var lk link.Link
	mode := "native"
	switch l.opts.Mode {
	case ModeNative:
		lk, err = try(link.XDPDriverMode)
	case ModeGeneric:
		mode = "generic"
		lk, err = try(link.XDPGenericMode)
	default:
		lk, err = try(link.XDPDriverMode)
		if err != nil {
			l.opts.Logger.Warn("native XDP attach failed, falling back to generic mode (slower: runs after skb allocation)",
				"interface", ifname, "err", err)
			mode = "generic"
			lk, err = try(link.XDPGenericMode)
		}
	}
	if err != nil {
		return fmt.Errorf("attach XDP to %s: %w", ifname, err)
	}
	if err := lk.Pin(pin); err != nil {
		lk.Close()
		return fmt.Errorf("pin link of %s: %w", ifname, err)
	}
	l.links[ifname] = lk
	l.fresh = append(l.fresh, lk)
	l.opts.Logger.Info("XDP program attached", "interface", ifname, "mode", mode)
	return nil
}

// Program returns the load balancer program, for tests and benchmarks that
// run it with BPF_PROG_TEST_RUN.
func (l *Loader) Program() *ebpf.Program { return l.objs.LbXdp }

// Close releases the loader. With keepState the program stays attached and
// the maps pinned, so a new Loader on the same PinDir carries on; without,
// links are detached and every pin removed.
func (l *Loader) Close(keepState bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	if !keepState {
		for name, lk := range l.links {
			if err := lk.Unpin(); err != nil {
				errs = append(errs, fmt.Errorf("unpin link of %s: %w", name, err))
			}
		}
		for _, m := range l.pinnedMaps() {
			if err := m.Unpin(); err != nil {
				errs = append(errs, fmt.Errorf("unpin map: %w", err))
			}
		}
	}
	l.closeFDs()
	if !keepState {
		// Only empty directories go; another program's pins stay.
		if err := os.Remove(l.opts.PinDir); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
			errs = append(errs, fmt.Errorf("remove pin dir: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (l *Loader) closeFDs() {
	for _, lk := range l.links {
		lk.Close()
	}
	l.links = map[string]link.Link{}
	l.objs.Close()
}

func (l *Loader) pinnedMaps() []*ebpf.Map {
	m := l.objs.LbMaps
	return []*ebpf.Map{m.LbBackends, m.LbConfig, m.LbConns, m.LbCtrlAllow, m.LbFlood, m.LbPeStats,
		m.LbRings, m.LbServices, m.LbStats, m.LbTxPorts, m.LbVipStats, m.LbVips}
}

// idPool hands out small integer ids, reusing freed ones oldest first so a
// freed id rests as long as possible before it is reused.
type idPool struct {
	next, limit uint32
	free        []uint32
}

func newIDPool(first, limit uint32) idPool { return idPool{next: first, limit: limit} }

func (p *idPool) get() (uint32, bool) {
	if len(p.free) > 0 {
		id := p.free[0]
		p.free = p.free[1:]
		return id, true
	}
	if p.next >= p.limit {
		return 0, false
	}
	p.next++
	return p.next - 1, true
}

func (p *idPool) put(id uint32) { p.free = append(p.free, id) }

// take marks id as used when restoring state.
func (p *idPool) take(id uint32) {
	for p.next <= id {
		p.free = append(p.free, p.next)
		p.next++
	}
	for i, f := range p.free {
		if f == id {
			p.free = append(p.free[:i], p.free[i+1:]...)
			return
		}
	}
}
