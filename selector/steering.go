package selector

import (
	"slices"

	"github.com/rspxdp/rspxdp/selector/policy"
)

// SteeringMember is one element of a steering set.
type SteeringMember struct {
	ID        uint32
	Transport Transport
	// Weight is the element's share of new flows relative to the others;
	// 0 means no new flows (draining, or outside the preferred class), but
	// existing flows stay.
	Weight   uint32
	State    State
	UserData any
}

// SteeringSet is what the data plane programs for a pool: every element
// new or existing flows may go to, with weights derived from the policy
// (see the package documentation for the mapping per policy).
type SteeringSet struct {
	Handle string
	Policy policy.Type
	// Version increases with every change to the pool, so a consumer can
	// skip a set older than the one it programmed.
	Version uint64
	// Members are in identifier order.
	Members []SteeringMember
}

// SteeringSet returns the pool's current steering set; false if the pool
// does not exist (every element gone, including draining ones).
func (h *Handlespace) SteeringSet(handle string) (SteeringSet, bool) {
	p := h.lookupPool(handle)
	if p == nil {
		return SteeringSet{Handle: handle}, false
	}
	p.mu.Lock()
	if p.dead || len(p.order)+len(p.drain) == 0 {
		p.mu.Unlock()
		return SteeringSet{Handle: handle}, false
	}
	n := len(p.order)
	// Sort identifier<<32|position keys: plain integers, so the sort does
	// no pointer chasing and no GC write barriers.
	keys := make([]uint64, 0, n+len(p.drain))
	for i, e := range p.order {
		keys = append(keys, uint64(e.ID)<<32|uint64(i))
	}
	for i, e := range p.drain {
		keys = append(keys, uint64(e.ID)<<32|uint64(n+i))
	}
	entries := make([]*policy.Entry, n)
	for i, e := range p.order {
		entries[i] = &e.Entry
	}
	w := make([]uint32, n)
	p.alg.Steer(entries, w)
	slices.Sort(keys)
	ss := SteeringSet{Handle: handle, Policy: p.alg.Type, Version: p.version,
		Members: make([]SteeringMember, len(keys))}
	for i, k := range keys {
		m := &ss.Members[i]
		if pos := int(uint32(k)); pos < n {
			e := p.order[pos]
			m.ID, m.Transport, m.Weight, m.State, m.UserData = e.ID, e.el.Transport, w[pos], Active, e.el.UserData
		} else {
			e := p.drain[pos-n]
			m.ID, m.Transport, m.State, m.UserData = e.ID, e.el.Transport, Draining, e.el.UserData
		}
	}
	p.mu.Unlock()
	return ss, true
}
