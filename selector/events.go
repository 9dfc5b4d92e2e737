package selector

import (
	"strings"
	"sync"
)

// EventKind is a bit set of what happened to a pool element.
type EventKind uint8

// Event kinds. A coalesced PoolChange ORs the kinds of its events.
const (
	// Added: a new element (or a draining one registered again).
	Added EventKind = 1 << iota
	// Removed: the element is gone, including from the steering set.
	Removed
	// StateChanged: the element started draining, or its transport
	// changed.
	StateChanged
	// WeightsChanged: policy values changed, so steering weights may have.
	WeightsChanged
	// Refreshed: a re-registration that changed nothing the data plane
	// uses (only the lifetime); not published to subscribers.
	Refreshed
)

// String lists the kinds.
func (k EventKind) String() string {
	var parts []string
	for i, n := range []string{"added", "removed", "state", "weights", "refreshed"} {
		if k&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	return strings.Join(parts, "|")
}

// Reason says why an element left resolution.
type Reason uint8

// Removal reasons.
const (
	ReasonNone         Reason = iota
	ReasonDeregistered        // ASAP deregistration (starts draining)
	ReasonExpired             // registration life ran out
	ReasonUnreachable         // MaxBadPEReports reached
	ReasonKeepAlive           // keep-alive failure at the home registrar
	ReasonReplicated          // ENRP handle update deleted it
	ReasonDrained             // drain timeout after deregistration
)

// Event is one change to one element.
type Event struct {
	Kind   EventKind
	ID     uint32
	Reason Reason
}

// maxEventsPerChange bounds the detail kept per pool between drains; a
// subscriber that falls further behind gets Overflow and must re-read the
// whole steering set (which it does anyway).
const maxEventsPerChange = 256

// PoolChange is every change to one pool since the subscriber's last
// Drain, coalesced.
type PoolChange struct {
	Handle   string
	Kinds    EventKind
	Events   []Event
	Overflow bool
}

// Subscription receives coalesced pool changes. Wait on Ready, then call
// Drain: a burst of changes to one pool between two drains is one
// PoolChange, so the data plane reprograms each pool once per burst.
type Subscription struct {
	h     *Handlespace
	ready chan struct{}

	mu      sync.Mutex
	pending map[string]*PoolChange
	order   []string
	closed  bool
}

// Subscribe starts delivering changes made from now on.
func (h *Handlespace) Subscribe() *Subscription {
	s := &Subscription{h: h, ready: make(chan struct{}, 1), pending: make(map[string]*PoolChange)}
	h.mu.Lock()
	h.subs = append(h.subs, s)
	h.mu.Unlock()
	return s
}

// Ready is signalled when changes are pending.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Drain returns the pending changes, one per pool, in the order the pools
// first changed, and clears them.
func (s *Subscription) Drain() []PoolChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PoolChange, 0, len(s.order))
	for _, k := range s.order {
		out = append(out, *s.pending[k])
		delete(s.pending, k)
	}
	s.order = s.order[:0]
	return out
}

// Close stops delivery.
func (s *Subscription) Close() {
	s.h.mu.Lock()
	for i, x := range s.h.subs {
		if x == s {
			s.h.subs = append(s.h.subs[:i], s.h.subs[i+1:]...)
			break
		}
	}
	s.h.mu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// publish records ev for every subscriber; h.mu is held.
func (h *Handlespace) publish(handle string, ev Event) {
	if ev.Kind == Refreshed || len(h.subs) == 0 {
		return
	}
	for _, s := range h.subs {
		s.add(handle, ev)
	}
}

func (s *Subscription) add(handle string, ev Event) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	c := s.pending[handle]
	if c == nil {
		c = &PoolChange{Handle: handle}
		s.pending[handle] = c
		s.order = append(s.order, handle)
	}
	c.Kinds |= ev.Kind
	if len(c.Events) < maxEventsPerChange {
		c.Events = append(c.Events, ev)
	} else {
		c.Overflow = true
	}
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}
