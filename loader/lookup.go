package loader

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/rspxdp/rspxdp/bpf"
)

// Pick returns the PE identifier that the data path's Maglev ring gives a
// new flow of service k, read from the installed ring: what every node with
// the same PE set and seed would choose. ok is false when the slot is empty.
func (l *Loader) Pick(k ServiceKey, f Flow) (peID uint32, ok bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	svc, found := l.services[k]
	if !found {
		return 0, false, fmt.Errorf("pick for %s: %w", k, ErrNotFound)
	}
	var ring *ebpf.Map
	if err := l.objs.LbRings.Lookup(svc.id, &ring); err != nil {
		return 0, false, fmt.Errorf("pick for %s: read ring: %w", k, err)
	}
	defer ring.Close()
	slot := FlowHash(f, l.opts.Seed) % l.opts.TableSize
	var e ringEntry
	if err := ring.Lookup(slot/ringLanes, &e); err != nil {
		return 0, false, fmt.Errorf("pick for %s: read slot %d: %w", k, slot, err)
	}
	bid := uint32(e[slot%ringLanes])
	if bid == 0 {
		return 0, false, nil
	}
	var be bpf.LbBackend
	if err := l.objs.LbBackends.Lookup(bid, &be); err != nil {
		return 0, false, fmt.Errorf("pick for %s: read PE slot %d: %w", k, bid, err)
	}
	return be.PeId, true, nil
}
