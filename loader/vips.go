package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/rspxdp/rspxdp/bpf"
)

// vipSlots is the size of lb_vips, the data path's direct-mapped service
// table (VIP_SLOTS in bpf/lb.h).
const vipSlots = 1 << 12

// vipSlot is the lb_vips slot of a service key: vip_slot_of in bpf/lb.c,
// over the same little-endian words the program loads.
func vipSlot(k bpf.LbVipKey) uint32 {
	x := k.Addr.W[0] ^ k.Addr.W[1] ^ k.Addr.W[2] ^ k.Addr.W[3] ^
		(uint32(k.Port) | uint32(k.Proto)<<16 | uint32(k.Family)<<24)
	return (x * 0x9e3779b1) >> (32 - 12)
}

// vipSlotWant is what lb_vips slot s must hold for the loader's services
// (skip excluded: a service being removed), given what it holds now (cur):
// the slot's owner, whose packets the program finds with one array index,
// and whether other services share the slot (the program then looks their
// keys up in lb_services). A current owner that is still a service keeps
// the slot, so adding or removing a colliding service never moves it;
// otherwise the service with the lowest id owns it.
func (l *Loader) vipSlotWant(s uint32, cur bpf.LbVipSlot, skip *ServiceKey) bpf.LbVipSlot {
	var want bpf.LbVipSlot
	n := 0
	for k, svc := range l.services {
		if skip != nil && k == *skip {
			continue
		}
		key, err := k.bpfKey()
		if err != nil || vipSlot(key) != s {
			continue
		}
		n++
		v := bpf.LbVipSlot{Key: key, Svc: bpf.LbService{Id: svc.id, Flags: svc.flags}}
		switch {
		case key == cur.Key:
			want = v // the owner stays
		case n == 1, want.Key != cur.Key && svc.id < want.Svc.Id:
			want = v
		}
	}
	if n > 1 {
		want.Spill = 1
	}
	return want
}

// syncVipSlot rewrites lb_vips slot s from the loader's services (skip
// excluded). A slot that changes owner is first emptied and marked shared,
// so a packet reading it meanwhile falls back to lb_services, which is
// right at every moment: it never pairs one owner's key with another's
// service.
func (l *Loader) syncVipSlot(s uint32, skip *ServiceKey) error {
	var cur bpf.LbVipSlot
	if err := l.objs.LbVips.Lookup(s, &cur); err != nil {
		return fmt.Errorf("read service slot %d: %w", s, err)
	}
	want := l.vipSlotWant(s, cur, skip)
	if want == cur {
		return nil
	}
	if cur.Key != (bpf.LbVipKey{}) && want.Key != cur.Key {
		if err := l.objs.LbVips.Update(s, &bpf.LbVipSlot{Spill: 1}, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write service slot %d: %w", s, err)
		}
	}
	if err := l.objs.LbVips.Update(s, &want, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write service slot %d: %w", s, err)
	}
	return nil
}

// repairVips compares every lb_vips slot with what the loader's services
// make of it and rewrites those that differ.
func (l *Loader) repairVips(note func(m, f string, a ...any)) error {
	keys := make([]uint32, vipSlots)
	vals := make([]bpf.LbVipSlot, vipSlots)
	var cursor ebpf.MapBatchCursor
	n, err := l.objs.LbVips.BatchLookup(&cursor, keys, vals, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("read service slots: %w", err)
	}
	var errs []error
	for i := range n {
		s, got := keys[i], vals[i]
		want := l.vipSlotWant(s, got, nil)
		if want == got {
			continue
		}
		if err := l.objs.LbVips.Update(s, &want, ebpf.UpdateAny); err != nil {
			errs = append(errs, fmt.Errorf("repair service slot %d: %w", s, err))
			continue
		}
		note(bpf.LbMapLbVips, "slot %d held service id %d (key %v, shared %d), want id %d (shared %d)",
			s, got.Svc.Id, got.Key.Addr.W, got.Spill, want.Svc.Id, want.Spill)
	}
	return errors.Join(errs...)
}
