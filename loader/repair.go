package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/rspxdp/rspxdp/bpf"
)

// Drift is one difference between a kernel map and what the loader wrote
// there, found (and repaired) by Repair.
type Drift struct {
	// Map is the BPF map: lb_services, lb_vips, lb_backends, lb_rings or
	// lb_tx_ports.
	Map string
	// What says what differed, naming the service or slot.
	What string
}

// String formats the drift for logs.
func (d Drift) String() string { return d.Map + ": " + d.What }

// Repair compares the kernel's maps themselves with what this loader last
// wrote — every service entry, every PE slot, every service's Maglev ring
// (by a digest of its contents) and the egress device map — and rewrites
// what differs: an entry deleted or changed behind the loader's back (by
// bpftool, say) is put back, a service entry the loader never wrote is
// removed. It returns what it repaired. Services() and Stats() describe
// the loader's records, so without Repair a deleted entry would go
// unnoticed while clients' packets passed unsteered.
func (l *Loader) Repair() ([]Drift, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Drift
	var errs []error
	note := func(m, f string, a ...any) { out = append(out, Drift{Map: m, What: fmt.Sprintf(f, a...)}) }

	known := make(map[bpf.LbVipKey]bool, len(l.services))
	for k, svc := range l.services {
		key, err := k.bpfKey()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		known[key] = true
		want := bpf.LbService{Id: svc.id, Flags: svc.flags}
		var got bpf.LbService
		err = l.objs.LbServices.Lookup(&key, &got)
		if err == nil && got == want {
			continue
		}
		if err := l.objs.LbServices.Update(&key, &want, ebpf.UpdateAny); err != nil {
			errs = append(errs, fmt.Errorf("repair service %s: %w", k, err))
			continue
		}
		if err != nil {
			note(bpf.LbMapLbServices, "service %s was missing", k)
		} else {
			note(bpf.LbMapLbServices, "service %s had id %d flags %#x, want %d %#x", k, got.Id, got.Flags, want.Id, want.Flags)
		}
	}
	var key bpf.LbVipKey
	var val bpf.LbService
	stray := map[bpf.LbVipKey]uint32{}
	it := l.objs.LbServices.Iterate()
	for it.Next(&key, &val) {
		if !known[key] {
			stray[key] = val.Id
		}
	}
	if err := it.Err(); err != nil {
		errs = append(errs, fmt.Errorf("read services: %w", err))
	}
	for k, id := range stray {
		if err := l.objs.LbServices.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("remove stray service: %w", err))
			continue
		}
		note(bpf.LbMapLbServices, "removed a service entry this node never wrote (id %d)", id)
	}
	if err := l.repairVips(note); err != nil {
		errs = append(errs, err)
	}

	for k, svc := range l.services {
		for slot, want := range svc.values {
			var got bpf.LbBackend
			if err := l.objs.LbBackends.Lookup(slot, &got); err == nil && got == want {
				continue
			}
			if err := l.objs.LbBackends.Update(slot, &want, ebpf.UpdateAny); err != nil {
				errs = append(errs, fmt.Errorf("repair PE slot %d of %s: %w", slot, k, err))
				continue
			}
			note(bpf.LbMapLbBackends, "PE %d of %s (slot %d) differed", want.PeId, k, slot)
		}
		if !svc.ringKnown {
			continue
		}
		var ring *ebpf.Map
		what := ""
		if err := l.objs.LbRings.Lookup(svc.id, &ring); err != nil {
			what = "missing"
		} else {
			sum, err := l.ringSumOf(ring)
			ring.Close()
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("read ring of %s: %w", k, err))
				continue
			case sum != svc.ringSum:
				what = "changed"
			}
		}
		if what == "" {
			continue
		}
		if err := l.swapRing(svc, svc.members, svc.memberSlot); err != nil {
			errs = append(errs, fmt.Errorf("rebuild ring of %s: %w", k, err))
			continue
		}
		note(bpf.LbMapLbRings, "ring of %s was %s: rebuilt", k, what)
	}

	for ifindex, port := range l.txPorts {
		var got uint32
		if err := l.objs.LbTxPorts.Lookup(uint32(port), &got); err == nil && got == uint32(ifindex) {
			continue
		}
		if err := l.objs.LbTxPorts.Update(uint32(port), uint32(ifindex), ebpf.UpdateAny); err != nil {
			errs = append(errs, fmt.Errorf("repair egress interface %d: %w", ifindex, err))
			continue
		}
		note(bpf.LbMapLbTxPorts, "egress interface %d (slot %d) was missing", ifindex, port)
	}
	return out, errors.Join(errs...)
}

// ringDigest is an FNV-1a digest of a ring's slots.
func ringDigest(vals []uint32) uint64 {
	h := uint64(14695981039346656037)
	for _, v := range vals {
		h ^= uint64(v)
		h *= 1099511628211
	}
	return h
}

// ringSumOf reads an installed ring and digests it.
func (l *Loader) ringSumOf(ring *ebpf.Map) (uint64, error) {
	n := int(ring.MaxEntries())
	keys := make([]uint32, n)
	vals := make([]ringEntry, n)
	var cursor ebpf.MapBatchCursor
	got, err := ring.BatchLookup(&cursor, keys, vals, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) || got != n {
		// Without batch lookups (older kernels): one by one.
		for i := range vals {
			if err := ring.Lookup(uint32(i), &vals[i]); err != nil {
				return 0, err
			}
		}
	}
	return ringDigest(unpackRing(vals, l.opts.TableSize)), nil
}
