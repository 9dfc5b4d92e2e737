package loader

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/rspxdp/rspxdp/bpf"
	"github.com/rspxdp/rspxdp/loader/maglev"
)

// Proto is the IP protocol of a virtual service.
type Proto uint8

// The protocols the data path steers.
const (
	TCP  Proto = 6
	UDP  Proto = 17
	SCTP Proto = 132
)

// String names the protocol as in "10.0.0.1:80/tcp".
func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	}
	return fmt.Sprintf("proto%d", uint8(p))
}

// ServiceKey identifies a virtual service: what a client sends to.
type ServiceKey struct {
	VIP   netip.AddrPort
	Proto Proto
}

// String formats the key as VIP:port/protocol.
func (k ServiceKey) String() string { return k.VIP.String() + "/" + k.Proto.String() }

// Service is a virtual service and how it forwards.
type Service struct {
	ServiceKey
	// L2DSR forwards by rewriting the destination MAC only, for PEs on
	// the same link that own the VIP; otherwise packets are encapsulated
	// (IPIP or IPv6-in-IPv6, by the PE's address family).
	L2DSR bool
}

// State is a pool element's state in the data path.
type State uint8

const (
	// Active PEs take new flows.
	Active State = 1
	// Draining PEs keep their established flows and take no new ones: the
	// RSerPool PE that deregistered keeps serving the users it has.
	Draining State = 2
	// Down PEs lose their flows, which move on their very next packet.
	Down State = 3
)

// String names the state for logs.
func (s State) String() string {
	switch s {
	case Active:
		return "active"
	case Draining:
		return "draining"
	case Down:
		return "down"
	}
	return fmt.Sprintf("state%d", uint8(s))
}

// Backend is a pool element behind a service.
type Backend struct {
	// ID is the control plane's PE identifier, unique within the service.
	// It, not the address, places the PE in the Maglev table, so every
	// node builds the same table.
	ID uint32
	// Addr is where encapsulated packets go (or, in L2 DSR mode, whose
	// MAC is the destination).
	Addr   netip.Addr
	Weight uint32
	State  State
}

// service is the loader's record of a programmed service.
type service struct {
	id       uint32
	flags    uint32
	backends map[uint32]uint32 // PE ID -> backend slot
	// What was last written to the kernel, so Repair can compare the maps
	// with it: each slot's value, and the ring's members and digest (nil
	// members: a ring adopted from pinned state, not yet rebuilt).
	values     map[uint32]bpf.LbBackend // slot -> value
	members    []maglev.Member
	memberSlot []uint32
	ringSum    uint64
	ringKnown  bool
}

func (k ServiceKey) bpfKey() (bpf.LbVipKey, error) {
	var key bpf.LbVipKey
	a := k.VIP.Addr().Unmap()
	switch {
	case !a.IsValid():
		return key, fmt.Errorf("service %s: no VIP address", k)
	case a.Is4():
		key.Family = 4
	default:
		key.Family = 6
	}
	switch k.Proto {
	case TCP, UDP, SCTP:
	default:
		return key, fmt.Errorf("service %s: unsupported protocol", k)
	}
	key.Addr.W = addrWords(a)
	key.Port = htons(k.VIP.Port())
	key.Proto = uint8(k.Proto)
	return key, nil
}

func htons(v uint16) uint16 { return v>>8 | v<<8 }

// ErrNotFound is returned for a service that was never programmed.
var ErrNotFound = errors.New("no such service")

// UpsertService adds a virtual service, or changes how an existing one
// forwards. A new service drops its packets (counted as "no PE") until
// SetBackends gives it PEs.
func (l *Loader) UpsertService(s Service) error {
	key, err := s.bpfKey()
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var flags uint32
	if s.L2DSR {
		flags |= 1 // SVC_F_L2DSR
	}
	svc, ok := l.services[s.ServiceKey]
	if !ok {
		id, ok := l.svcFree.get()
		if !ok {
			return fmt.Errorf("add service %s: all %d service slots in use", s.ServiceKey, l.opts.MaxServices)
		}
		svc = &service{id: id, backends: map[uint32]uint32{}, values: map[uint32]bpf.LbBackend{}}
		if err := l.zeroPerCPU(l.objs.LbVipStats, id, bpf.LbVipStats{}); err != nil {
			l.svcFree.put(id)
			return fmt.Errorf("add service %s: %w", s.ServiceKey, err)
		}
	}
	svc.flags = flags
	if err := l.objs.LbServices.Update(&key, &bpf.LbService{Id: svc.id, Flags: flags}, ebpf.UpdateAny); err != nil {
		if !ok {
			l.svcFree.put(svc.id)
		}
		return fmt.Errorf("write service %s: %w", s.ServiceKey, err)
	}
	l.services[s.ServiceKey] = svc
	if err := l.syncVipSlot(vipSlot(key), nil); err != nil {
		return fmt.Errorf("add service %s: %w", s.ServiceKey, err)
	}
	return nil
}

// RemoveService stops steering a service: its packets pass to the host
// stack again, and its PEs' slots are freed.
func (l *Loader) RemoveService(k ServiceKey) error {
	key, err := k.bpfKey()
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	svc, ok := l.services[k]
	if !ok {
		return fmt.Errorf("remove service %s: %w", k, ErrNotFound)
	}
	// The data path's slot first: from then on the service's packets pass.
	if err := l.syncVipSlot(vipSlot(key), &k); err != nil {
		return fmt.Errorf("remove service %s: %w", k, err)
	}
	if err := l.objs.LbServices.Delete(&key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("remove service %s: %w", k, err)
	}
	if err := l.objs.LbRings.Delete(svc.id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("remove ring of %s: %w", k, err)
	}
	for _, slot := range svc.backends {
		if err := l.freeBackend(svc, slot); err != nil {
			return fmt.Errorf("remove service %s: %w", k, err)
		}
	}
	delete(l.services, k)
	l.svcFree.put(svc.id)
	return nil
}

// SetBackends replaces the PE set of a service. It writes new and
// reactivated PEs first, then swaps in a Maglev ring built from the active
// PEs with weight > 0, then applies draining and down states and frees the
// slots of PEs no longer listed (their flows move on their next packet). A
// packet therefore never meets a half-written ring, nor a ring that sends a
// new flow to a PE that no longer takes new flows.
func (l *Loader) SetBackends(k ServiceKey, backends []Backend) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	svc, ok := l.services[k]
	if !ok {
		return fmt.Errorf("set backends of %s: %w", k, ErrNotFound)
	}
	seen := map[uint32]bool{}
	for _, b := range backends {
		if seen[b.ID] {
			return fmt.Errorf("set backends of %s: PE %d listed twice", k, b.ID)
		}
		seen[b.ID] = true
		if !b.Addr.IsValid() {
			return fmt.Errorf("set backends of %s: PE %d has no address", k, b.ID)
		}
		if b.State < Active || b.State > Down {
			return fmt.Errorf("set backends of %s: PE %d has invalid state %d", k, b.ID, b.State)
		}
	}

	// Resolve next hops before touching any map. A down PE needs none (it
	// gets no packets); one whose next hop cannot be found keeps the one it
	// had or, if new, is programmed down and reported: one dead host must
	// never block the update of the rest of its pool.
	backends = slices.Clone(backends)
	values := make([]bpf.LbBackend, len(backends))
	var unresolved []error
	for i, b := range backends {
		var prev *bpf.LbBackend
		if slot, ok := svc.backends[b.ID]; ok {
			var pv bpf.LbBackend
			if err := l.objs.LbBackends.Lookup(slot, &pv); err == nil && pv.State != 0 {
				prev = &pv
			}
		}
		v, err := l.backendValue(svc, b, prev)
		switch {
		case errors.Is(err, ErrNoNextHop):
			unresolved = append(unresolved, err)
			backends[i].State = Down
			v.State = uint8(Down)
		case err != nil:
			return fmt.Errorf("set backends of %s: %w", k, err)
		}
		values[i] = v
	}
	slots := make([]uint32, len(backends))
	var fresh []uint32
	for i, b := range backends {
		slot, ok := svc.backends[b.ID]
		if !ok {
			slot, ok = l.beFree.get()
			if !ok {
				for _, s := range fresh {
					l.beFree.put(s)
				}
				return fmt.Errorf("set backends of %s: all %d PE slots in use", k, l.opts.MaxBackends)
			}
			fresh = append(fresh, slot)
		}
		slots[i] = slot
	}
	for _, s := range fresh {
		if err := l.zeroPerCPU(l.objs.LbPeStats, s, bpf.LbPeStats{}); err != nil {
			return fmt.Errorf("set backends of %s: %w", k, err)
		}
	}

	// 1. PEs that take new flows: written before the ring points at them.
	for i, b := range backends {
		if b.State == Active {
			if err := l.writeBackend(svc, slots[i], values[i]); err != nil {
				return fmt.Errorf("write PE %d of %s: %w", b.ID, k, err)
			}
		}
	}
	// 2. The ring, built aside and swapped in with one map update.
	members := make([]maglev.Member, 0, len(backends))
	memberSlot := make([]uint32, 0, len(backends))
	for i, b := range backends {
		if b.State == Active && b.Weight > 0 {
			members = append(members, maglev.Member{Key: uint64(b.ID), Weight: b.Weight})
			memberSlot = append(memberSlot, slots[i])
		}
	}
	if err := l.swapRing(svc, members, memberSlot); err != nil {
		return fmt.Errorf("set backends of %s: %w", k, err)
	}
	// 3. PEs that take no new flows, now that the ring no longer names them.
	for i, b := range backends {
		if b.State != Active {
			if err := l.writeBackend(svc, slots[i], values[i]); err != nil {
				return fmt.Errorf("write PE %d of %s: %w", b.ID, k, err)
			}
		}
	}
	// 4. PEs that left the set.
	next := make(map[uint32]uint32, len(backends))
	for i, b := range backends {
		next[b.ID] = slots[i]
	}
	for id, slot := range svc.backends {
		if _, ok := next[id]; !ok {
			if err := l.freeBackend(svc, slot); err != nil {
				return fmt.Errorf("set backends of %s: %w", k, err)
			}
		}
	}
	svc.backends = next
	if len(unresolved) > 0 {
		return fmt.Errorf("set backends of %s: programmed down: %w", k, errors.Join(unresolved...))
	}
	return nil
}

// swapRing builds a Maglev ring for members (backend slots in memberSlot)
// into a new inner map and installs it as the service's ring.
func (l *Loader) swapRing(svc *service, members []maglev.Member, memberSlot []uint32) error {
	table, err := maglev.Build(members, l.opts.TableSize, l.opts.Seed)
	if err != nil {
		return err
	}
	ring, err := ebpf.NewMap(l.inner)
	if err != nil {
		return fmt.Errorf("create ring: %w", err)
	}
	defer ring.Close()
	vals := make([]uint32, len(table))
	for i, m := range table {
		if m != maglev.Empty {
			vals[i] = memberSlot[m]
		}
	}
	keys, packed := packRing(vals)
	if _, err := ring.BatchUpdate(keys, packed, nil); err != nil {
		// Older kernels lack batch ops on arrays.
		for i := range keys {
			if err := ring.Update(keys[i], packed[i], ebpf.UpdateAny); err != nil {
				return fmt.Errorf("fill ring: %w", err)
			}
		}
	}
	if err := l.objs.LbRings.Update(svc.id, ring, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("install ring: %w", err)
	}
	svc.members, svc.memberSlot, svc.ringSum, svc.ringKnown = slices.Clone(members), slices.Clone(memberSlot), ringDigest(vals), true
	return nil
}

// freeBackend clears a slot (so connection entries naming it re-steer) and
// returns it to the pool.
func (l *Loader) freeBackend(svc *service, slot uint32) error {
	if err := l.objs.LbBackends.Update(slot, &bpf.LbBackend{}, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("free PE slot %d: %w", slot, err)
	}
	delete(svc.values, slot)
	l.beFree.put(slot)
	return nil
}

// writeBackend writes a PE slot and records what it wrote.
func (l *Loader) writeBackend(svc *service, slot uint32, v bpf.LbBackend) error {
	if err := l.objs.LbBackends.Update(slot, &v, ebpf.UpdateAny); err != nil {
		return err
	}
	svc.values[slot] = v
	return nil
}

// ErrNoNextHop reports a PE whose next hop could not be resolved; SetBackends
// programs such a PE down and still applies the rest.
var ErrNoNextHop = errors.New("no next hop")

// backendValue builds a PE's map value. prev is its current value, if any,
// whose next hop serves when the PE is down or cannot be resolved now.
func (l *Loader) backendValue(svc *service, b Backend, prev *bpf.LbBackend) (bpf.LbBackend, error) {
	v := bpf.LbBackend{
		State:  uint8(b.State),
		Svc:    svc.id,
		PeId:   b.ID,
		Weight: b.Weight,
	}
	a := b.Addr.Unmap()
	v.Addr.W = addrWords(a)
	v.Family = 6
	if a.Is4() {
		v.Family = 4
	}
	keepPrev := func() {
		v.Dmac, v.Smac, v.TxPort, v.Ifindex = prev.Dmac, prev.Smac, prev.TxPort, prev.Ifindex
	}
	if b.State == Down {
		if prev != nil {
			keepPrev()
		}
		return v, nil
	}
	hop, err := l.opts.Resolver.Resolve(a)
	if err != nil {
		if prev != nil && prev.Dmac != ([6]uint8{}) {
			l.opts.Logger.Warn("next hop of PE not resolvable, keeping the previous one",
				"pe", b.ID, "addr", a, "err", err)
			keepPrev()
			return v, nil
		}
		return v, fmt.Errorf("%w for PE %d (%s): %v", ErrNoNextHop, b.ID, a, err)
	}
	if hop.Ifindex <= 0 {
		return v, fmt.Errorf("%w for PE %d (%s): no egress interface", ErrNoNextHop, b.ID, a)
	}
	copy(v.Dmac[:], hop.DstMAC)
	copy(v.Smac[:], hop.SrcMAC)
	// Every PE gets its egress interface's device map slot: the data path
	// redirects whenever that interface is not the ingress one.
	port, err := l.txPort(hop.Ifindex)
	if err != nil {
		return v, fmt.Errorf("PE %d (%s): %w", b.ID, a, err)
	}
	v.TxPort = port
	v.Ifindex = uint32(hop.Ifindex)
	return v, nil
}

// txPort returns the lb_tx_ports slot of an egress interface, adding it.
func (l *Loader) txPort(ifindex int) (uint16, error) {
	if p, ok := l.txPorts[ifindex]; ok {
		return p, nil
	}
	p := uint16(len(l.txPorts))
	if uint32(p) >= l.objs.LbTxPorts.MaxEntries() {
		return 0, fmt.Errorf("more than %d egress interfaces", l.objs.LbTxPorts.MaxEntries())
	}
	if err := l.objs.LbTxPorts.Update(uint32(p), uint32(ifindex), ebpf.UpdateAny); err != nil {
		return 0, fmt.Errorf("add egress interface %d: %w", ifindex, err)
	}
	l.txPorts[ifindex] = p
	return p, nil
}

// zeroPerCPU resets one entry of a per-CPU array, so a reused id starts
// its counters at zero.
func (l *Loader) zeroPerCPU(m *ebpf.Map, key uint32, zero any) error {
	var vals any
	switch zero.(type) {
	case bpf.LbVipStats:
		vals = make([]bpf.LbVipStats, l.ncpu)
	case bpf.LbPeStats:
		vals = make([]bpf.LbPeStats, l.ncpu)
	default:
		return fmt.Errorf("zeroPerCPU: unexpected %T", zero)
	}
	if err := m.Update(key, vals, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("reset counters %d: %w", key, err)
	}
	return nil
}

// restore rebuilds the loader's records from pinned maps left by an
// earlier Loader.
func (l *Loader) restore() error {
	byID := map[uint32]*service{}
	var key bpf.LbVipKey
	var val bpf.LbService
	it := l.objs.LbServices.Iterate()
	for it.Next(&key, &val) {
		k := ServiceKey{
			VIP:   netip.AddrPortFrom(wordsAddr(key.Addr.W, key.Family), htons(key.Port)),
			Proto: Proto(key.Proto),
		}
		svc := &service{id: val.Id, flags: val.Flags, backends: map[uint32]uint32{}, values: map[uint32]bpf.LbBackend{}}
		l.services[k] = svc
		byID[val.Id] = svc
		l.svcFree.take(val.Id)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read services: %w", err)
	}
	// Pinned state from before lb_vips existed has only lb_services.
	for k := range l.services {
		key, err := k.bpfKey()
		if err != nil {
			return err
		}
		if err := l.syncVipSlot(vipSlot(key), nil); err != nil {
			return err
		}
	}
	var slot uint32
	var be bpf.LbBackend
	bit := l.objs.LbBackends.Iterate()
	for bit.Next(&slot, &be) {
		if be.State == 0 || slot == 0 {
			continue
		}
		svc, ok := byID[be.Svc]
		if !ok {
			continue
		}
		svc.backends[be.PeId] = slot
		svc.values[slot] = be
		l.beFree.take(slot)
	}
	if err := bit.Err(); err != nil {
		return fmt.Errorf("read PEs: %w", err)
	}
	var port, ifindex uint32
	tit := l.objs.LbTxPorts.Iterate()
	for tit.Next(&port, &ifindex) {
		l.txPorts[int(ifindex)] = uint16(port)
	}
	// Device maps may refuse iteration on some kernels; the slots are
	// rewritten on demand, so an error here costs nothing.
	return nil
}

// Services lists the programmed services and their PEs as the data path
// holds them.
func (l *Loader) Services() (map[ServiceKey][]Backend, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[ServiceKey][]Backend, len(l.services))
	for k, svc := range l.services {
		list := []Backend{}
		for _, slot := range svc.backends {
			var be bpf.LbBackend
			if err := l.objs.LbBackends.Lookup(slot, &be); err != nil {
				return nil, fmt.Errorf("read PE slot %d: %w", slot, err)
			}
			list = append(list, Backend{ID: be.PeId, Addr: wordsAddr(be.Addr.W, be.Family), Weight: be.Weight, State: State(be.State)})
		}
		slices.SortFunc(list, func(a, b Backend) int { return cmp.Compare(a.ID, b.ID) })
		out[k] = list
	}
	return out, nil
}
