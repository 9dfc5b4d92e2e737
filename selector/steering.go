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
	p := h.poolLocked(handle)
	if p == nil {
		return SteeringSet{Handle: handle}, false
	}
	p.mu.Lock()
	if p.dead || len(p.order)+len(p.drain) == 0 {
		p.mu.Unlock()
		return SteeringSet{Handle: handle}, false
	}
	ss := SteeringSet{Handle: handle, Policy: p.alg.Type, Version: p.version,
		Members: make([]SteeringMember, 0, len(p.order)+len(p.drain))}
	entries := make([]*policy.Entry, len(p.order))
	for i, e := range p.order {
		entries[i] = &e.Entry
	}
	w := make([]uint32, len(entries))
	p.alg.Steer(entries, w)
	for i, e := range p.order {
		ss.Members = append(ss.Members, SteeringMember{ID: e.ID, Transport: e.el.Transport, Weight: w[i], State: Active, UserData: e.el.UserData})
	}
	for _, e := range p.drain {
		ss.Members = append(ss.Members, SteeringMember{ID: e.ID, Transport: e.el.Transport, Weight: 0, State: Draining, UserData: e.el.UserData})
	}
	p.mu.Unlock()
	slices.SortFunc(ss.Members, func(a, b SteeringMember) int { return int64cmp(int64(a.ID), int64(b.ID)) })
	return ss, true
}
