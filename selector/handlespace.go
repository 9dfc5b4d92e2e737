package selector

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/rspxdp/rspxdp/selector/policy"
)

// All as the item count of Resolve returns every active element.
const All = -1

// Defaults as rsplib's registrar.
const (
	DefaultMaxHandleResolutionItems = 3
	DefaultMaxBadPEReports          = 3
	DefaultDrainTimeout             = 30 * time.Second
)

// Config tunes a Handlespace. The zero value is usable.
type Config struct {
	// MaxHandleResolutionItems is the number of elements Resolve returns
	// when asked for 0 (default 3).
	MaxHandleResolutionItems int
	// MaxIncrement is how many of the returned elements advance their
	// policy state per resolution; 0 uses each policy's default (1 for
	// ordered policies, 0 for randomized ones, as rsplib).
	MaxIncrement int
	// MaxBadPEReports is the number of unreachability reports that remove
	// an element (default 3).
	MaxBadPEReports int
	// DrainTimeout is how long a deregistered element stays in the steering
	// set with weight 0 so its existing flows continue (default 30 s;
	// negative: remove at once).
	DrainTimeout time.Duration
	// MaxPools and MaxPoolElements bound the handlespace (0: unbounded);
	// registrations past them are refused with cause 6.
	MaxPools        int
	MaxPoolElements int
	// MaxPoolElementsPerPool bounds each pool (0: unbounded), so one
	// handle cannot take the whole handlespace; past it, cause 6 too.
	MaxPoolElementsPerPool int
	// Seed seeds the randomized policies, so tests are reproducible.
	Seed uint64
	// OnExpire, if set, is called by Sweep for every element whose
	// registration life ran out, after the element was removed and outside
	// all locks.
	OnExpire func(handle string, pe PoolElement)
	// Policies adds algorithms beyond the built-in ones (or replaces one
	// with the same type).
	Policies []*policy.Algorithm
}

// Handlespace is the registrar's pool handle -> pool -> element table.
//
// Locking: writers (registration, deregistration, expiry, reports) take
// mu, so the expiry heap, checksums and subscriptions need no other lock.
// Each pool has its own mutex, which resolutions take alone: a resolution
// waits only for a writer changing that same pool, for the microsecond the
// change takes, never for the handlespace as a whole. The pool map is
// copy-on-write behind an atomic pointer, so finding a pool costs readers
// one load and no shared write; writers copy it only when a pool is
// created, or when Sweep drops pools that became empty (kept until then so
// a pool that empties and refills does not copy the map twice).
type Handlespace struct {
	cfg      Config
	policies map[policy.Type]*policy.Algorithm

	mu      sync.Mutex // serialises writers
	heap    expiryHeap
	owners  map[uint32]uint64 // checksum accumulators per home registrar
	total   uint64
	count   int
	subs    []*Subscription
	expired []expiredPE

	// pools maps handle to *pool. A sync.Map, not a copied-on-write map:
	// creating a pool copied every other one, so registrations creating
	// pools slowed down linearly with their number (issue 19 item 8:
	// 554/s at 60,000 pools against 37,000/s at 1,000). Readers still take
	// no lock of the handlespace. npools counts its entries (h.mu).
	pools   sync.Map
	npools  int
	emptied []*pool // pools that became empty, dropped by Sweep
}

type expiredPE struct {
	handle string
	pe     PoolElement
}

// pool is one pool handle's elements.
type pool struct {
	handle    string
	handleSum uint64 // checksum words of the handle

	mu       sync.Mutex
	dead     bool
	alg      *policy.Algorithm
	protocol Protocol
	use      TransportUse
	byID     map[uint32]*pe
	order    []*pe // active elements in selection order
	drain    []*pe // deregistered, still steered for existing flows
	seq      uint64
	valueSum uint64   // sum of Entry.Value over order (weighted policies)
	prefix   []uint64 // running sums of Entry.Value in order, when !stale
	stale    bool
	rng      rand.PCG
	scratch  []*pe
	version  uint64
}

// pe is one element with its selection state.
type pe struct {
	policy.Entry
	el       PoolElement
	pool     *pool
	heapIdx  int   // index in the expiry heap, -1 when not in it
	deadline int64 // unix ns of expiry or drain end, 0: none
	sum      uint64
	picked   bool
}

// New returns an empty handlespace.
func New(cfg Config) (*Handlespace, error) {
	if cfg.MaxHandleResolutionItems <= 0 {
		cfg.MaxHandleResolutionItems = DefaultMaxHandleResolutionItems
	}
	if cfg.MaxBadPEReports <= 0 {
		cfg.MaxBadPEReports = DefaultMaxBadPEReports
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	h := &Handlespace{
		cfg:      cfg,
		policies: make(map[policy.Type]*policy.Algorithm),
		owners:   make(map[uint32]uint64),
	}
	for _, a := range policy.All() {
		h.policies[a.Type] = a
	}
	for _, a := range cfg.Policies {
		if err := a.Validate(); err != nil {
			return nil, fmt.Errorf("new handlespace: %w", err)
		}
		h.policies[a.Type] = a
	}
	return h, nil
}

func (h *Handlespace) errorf(c Cause, handle string, id uint32, format string, args ...any) error {
	return &Error{Cause: c, Handle: handle, ID: id, Detail: fmt.Sprintf(format, args...)}
}

func (h *Handlespace) validate(handle string, el *PoolElement) (*policy.Algorithm, error) {
	switch {
	case len(handle) == 0:
		return nil, h.errorf(CauseInvalidValues, handle, el.ID, "empty pool handle")
	case el.ID == 0:
		return nil, h.errorf(CauseInvalidValues, handle, el.ID, "identifier 0")
	case len(el.Transport.Addrs) == 0 || el.Transport.Port == 0:
		return nil, h.errorf(CauseInvalidValues, handle, el.ID, "no user transport address or port")
	}
	alg := h.policies[el.Policy.Type]
	if alg == nil {
		return nil, h.errorf(CauseInvalidValues, handle, el.ID, "unsupported policy %s", el.Policy.Type)
	}
	return alg, nil
}

// Register adds a pool element, or refreshes it when its identifier is
// already registered by the same owner (re-registration: new lifetime,
// policy values, transport). It enforces RFC 5352's pool consistency:
// one policy per pool (cause 5), one transport protocol (cause 7) and
// transport use (cause 8), identifiers unique per pool (cause 4).
// added is false for a re-registration. The handlespace keeps el,
// including its Transport.Addrs slice, which the caller must not modify
// afterwards; elements handed out share that slice the same way.
func (h *Handlespace) Register(handle string, el PoolElement, now time.Time) (added bool, err error) {
	return h.register(handle, el, now, true)
}

// Update is Register for registrar-to-registrar replication (ENRP Handle
// Update, Handle Table Response): the owning registrar's view is
// authoritative, so an existing identifier is overwritten without the
// owner check. Pool consistency is still enforced.
func (h *Handlespace) Update(handle string, el PoolElement, now time.Time) (added bool, err error) {
	return h.register(handle, el, now, false)
}

func (h *Handlespace) register(handle string, el PoolElement, now time.Time, checkOwner bool) (bool, error) {
	alg, err := h.validate(handle, &el)
	if err != nil {
		return false, err
	}
	el.State = Active
	el.Reports = 0
	el.Expires = time.Time{}
	if el.Lifetime > 0 {
		el.Expires = now.Add(el.Lifetime)
	}

	h.mu.Lock()
	defer h.mu.Unlock()

	p := h.lookupPool(handle)
	if p == nil {
		if h.cfg.MaxPools > 0 && h.npools >= h.cfg.MaxPools {
			h.dropEmptiedLocked() // empty pools awaiting the sweep do not count
		}
		if h.cfg.MaxPools > 0 && h.npools >= h.cfg.MaxPools {
			return false, h.errorf(CauseLackOfResources, handle, el.ID, "%d pools", h.npools)
		}
		p = newPool(handle, alg, &el, h.cfg.Seed)
		h.pools.Store(handle, p)
		h.npools++
	}

	p.mu.Lock()
	added, kinds, err := h.upsertLocked(p, alg, el, checkOwner)
	if err == nil {
		p.version++
	}
	empty := len(p.order) == 0 && len(p.drain) == 0
	p.mu.Unlock()
	if empty { // the refused element would have been the first
		h.emptied = append(h.emptied, p)
		return false, err
	}
	if err != nil {
		return false, err
	}
	h.publish(handle, Event{Kind: kinds, ID: el.ID})
	return added, nil
}

func newPool(handle string, alg *policy.Algorithm, el *PoolElement, seed uint64) *pool {
	p := &pool{
		handle:    handle,
		handleSum: checksumWords(0, []byte(handle)),
		alg:       alg,
		protocol:  el.Transport.Protocol,
		use:       el.Transport.Use,
		byID:      make(map[uint32]*pe),
	}
	p.rng.Seed(seed, p.handleSum^uint64(len(handle))<<32)
	return p
}

// upsertLocked adds or refreshes el in p; h.mu and p.mu are held.
func (h *Handlespace) upsertLocked(p *pool, alg *policy.Algorithm, el PoolElement, checkOwner bool) (bool, EventKind, error) {
	old := p.byID[el.ID]
	others := len(p.order)
	if old != nil {
		others--
	}
	if others > 0 {
		switch {
		case alg.Type != p.alg.Type:
			return false, 0, h.errorf(CauseInconsistentPolicy, p.handle, el.ID, "pool uses %s, element %s", p.alg.Type, alg.Type)
		case el.Transport.Protocol != p.protocol:
			return false, 0, h.errorf(CauseInconsistentTransport, p.handle, el.ID, "pool uses %s, element %s", p.protocol, el.Transport.Protocol)
		case el.Transport.Use != p.use:
			return false, 0, h.errorf(CauseInconsistentDataControl, p.handle, el.ID, "transport use %d, pool %d", el.Transport.Use, p.use)
		}
	} else if alg != p.alg || el.Transport.Protocol != p.protocol || el.Transport.Use != p.use {
		// The element is (or will be) alone: it may redefine the pool.
		p.protocol, p.use = el.Transport.Protocol, el.Transport.Use
		if alg != p.alg {
			p.alg = alg
			p.resort()
		}
	}

	if old != nil {
		if checkOwner && !sameOwner(&old.el, &el) {
			return false, 0, h.errorf(CauseNonUniqueID, p.handle, el.ID, "identifier in use by another element")
		}
		return false, h.refreshLocked(p, old, el), nil
	}

	if h.cfg.MaxPoolElements > 0 && h.count >= h.cfg.MaxPoolElements {
		return false, 0, h.errorf(CauseLackOfResources, p.handle, el.ID, "%d pool elements", h.count)
	}
	if h.cfg.MaxPoolElementsPerPool > 0 && len(p.byID) >= h.cfg.MaxPoolElementsPerPool {
		return false, 0, h.errorf(CauseLackOfResources, p.handle, el.ID, "%d pool elements in the pool", len(p.byID))
	}
	kinds := Added
	// A draining element coming back is a fresh registration.
	if i := p.drainIndex(el.ID); i >= 0 {
		d := p.drain[i]
		p.drain = slices.Delete(p.drain, i, i+1)
		h.heap.remove(d)
		kinds |= StateChanged
	}
	e := &pe{el: el, pool: p, heapIdx: -1}
	e.ID = el.ID
	e.Settings = el.Policy
	e.Seq = p.seq
	p.seq++
	if p.alg.Init != nil {
		var head *policy.Entry
		if len(p.order) > 0 {
			head = &p.order[0].Entry
		}
		p.alg.Init(&e.Entry, head)
	}
	p.insert(e)
	p.byID[el.ID] = e
	e.sum = p.handleSum + uint64(el.ID>>16) + uint64(el.ID&0xffff)
	h.owners[el.Home] += e.sum
	h.total += e.sum
	h.count++
	h.setDeadline(e, el.Expires)
	return true, kinds, nil
}

// sameOwner reports whether el may refresh old. An old element with an
// owner may be refreshed only by that owner. One without (registered
// anonymously, or replicated from a peer: owners are not on the wire) is
// matched by transport, so a PE taken over by this registrar can
// re-register here under its own identity.
func sameOwner(old, el *PoolElement) bool {
	if old.Owner != "" {
		return old.Owner == el.Owner
	}
	return old.Transport.overlaps(el.Transport)
}

// refreshLocked applies a re-registration to e.
func (h *Handlespace) refreshLocked(p *pool, e *pe, el PoolElement) EventKind {
	var kinds EventKind
	if el.Home != e.el.Home {
		h.owners[e.el.Home] -= e.sum
		if h.owners[e.el.Home] == 0 {
			delete(h.owners, e.el.Home)
		}
		h.owners[el.Home] += e.sum
	}
	if !el.Transport.equal(e.el.Transport) {
		kinds |= StateChanged
	}
	// As rsplib: new policy values, or any accumulated degradation, reset
	// the degradation and reposition the element; its sequence number (its
	// place among equals) and its unreachability reports are kept.
	if e.FlowDegradation != 0 {
		e.FlowDegradation = 0
		kinds |= WeightsChanged
	}
	if el.Policy != e.Settings || e.Degradation != 0 {
		if el.Policy != e.Settings {
			kinds |= WeightsChanged
		}
		p.remove(e)
		e.Settings = el.Policy
		e.Degradation = 0
		if w := uint64(e.Settings.Weight); e.Virtual > w {
			e.Virtual = w
		}
		p.insert(e)
	}
	el.Reports = e.el.Reports
	e.el = el
	h.setDeadline(e, el.Expires)
	if kinds == 0 {
		kinds = Refreshed
	}
	return kinds
}

// Deregister removes an element from resolution. With a drain timeout it
// stays in the pool's steering set with weight 0 until the timeout, so the
// data plane keeps its existing flows.
func (h *Handlespace) Deregister(handle string, id uint32, now time.Time) (PoolElement, error) {
	return h.removeElement(handle, id, now, ReasonDeregistered)
}

// Remove takes an element out at once, including from the steering set,
// so existing flows move too: for keep-alive failures and unreachability,
// where the element is known dead. For an ENRP Handle Update deletion, whose
// reason the message does not carry, Deregister is the safer call: every
// rspxdp node then drains the element the same way as its home registrar's
// node, so flows that ECMP sent through another node are not cut.
func (h *Handlespace) Remove(handle string, id uint32, reason Reason) (PoolElement, error) {
	return h.removeElement(handle, id, time.Time{}, reason)
}

func (h *Handlespace) removeElement(handle string, id uint32, now time.Time, reason Reason) (PoolElement, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.lookupPool(handle)
	if p == nil {
		return PoolElement{}, h.errorf(CauseUnknownPoolHandle, handle, id, "no such pool")
	}
	p.mu.Lock()
	e := p.byID[id]
	if e == nil {
		if i := p.drainIndex(id); i >= 0 && reason != ReasonDeregistered {
			e = p.drain[i]
			p.drain = slices.Delete(p.drain, i, i+1)
			h.heap.remove(e)
			out := e.el
			empty := p.finishLocked()
			p.mu.Unlock()
			if empty {
				h.dropPool(p)
			}
			h.publish(handle, Event{Kind: Removed, ID: id, Reason: reason})
			return out, nil
		}
		p.mu.Unlock()
		return PoolElement{}, h.errorf(CauseUnknownPoolHandle, handle, id, "no such element")
	}
	h.detachLocked(p, e)
	kind := Removed
	if reason == ReasonDeregistered && h.cfg.DrainTimeout > 0 {
		e.el.State = Draining
		p.drain = append(p.drain, e)
		h.setDeadline(e, now.Add(h.cfg.DrainTimeout))
		kind = StateChanged
	} else {
		h.heap.remove(e)
	}
	out := e.el
	empty := p.finishLocked()
	p.mu.Unlock()
	if empty {
		h.dropPool(p)
	}
	h.publish(handle, Event{Kind: kind, ID: id, Reason: reason})
	return out, nil
}

// detachLocked takes e out of resolution and the checksums.
func (h *Handlespace) detachLocked(p *pool, e *pe) {
	p.remove(e)
	delete(p.byID, e.ID)
	h.owners[e.el.Home] -= e.sum
	if h.owners[e.el.Home] == 0 {
		delete(h.owners, e.el.Home)
	}
	h.total -= e.sum
	h.count--
}

// finishLocked bumps the pool version and reports whether it is empty.
func (p *pool) finishLocked() bool {
	p.version++
	return len(p.order) == 0 && len(p.drain) == 0
}

// dropPool queues an empty pool for removal by the next Sweep; h.mu held.
func (h *Handlespace) dropPool(p *pool) {
	h.emptied = append(h.emptied, p)
}

// dropEmptiedLocked removes the queued pools that are still empty with one
// copy of the pool map; h.mu held.
func (h *Handlespace) dropEmptiedLocked() {
	if len(h.emptied) == 0 {
		return
	}
	for _, p := range h.emptied {
		p.mu.Lock()
		if len(p.order) == 0 && len(p.drain) == 0 && h.lookupPool(p.handle) == p {
			p.dead = true
			h.pools.Delete(p.handle)
			h.npools--
		}
		p.mu.Unlock()
	}
	clear(h.emptied)
	h.emptied = h.emptied[:0]
}

func (h *Handlespace) lookupPool(handle string) *pool {
	v, ok := h.pools.Load(handle)
	if !ok {
		return nil
	}
	return v.(*pool)
}

// eachPool calls fn for every pool in the map, in no order.
func (h *Handlespace) eachPool(fn func(handle string, p *pool)) {
	h.pools.Range(func(k, v any) bool {
		fn(k.(string), v.(*pool))
		return true
	})
}

// ReportUnreachable counts an Endpoint Unreachable report; when the count
// reaches MaxBadPEReports the element is removed (as rsplib, reports are
// not reset by re-registration).
func (h *Handlespace) ReportUnreachable(handle string, id uint32) (removed bool, err error) {
	h.mu.Lock()
	p := h.lookupPool(handle)
	if p == nil {
		h.mu.Unlock()
		return false, h.errorf(CauseUnknownPoolHandle, handle, id, "no such pool")
	}
	p.mu.Lock()
	e := p.byID[id]
	if e == nil {
		p.mu.Unlock()
		h.mu.Unlock()
		return false, h.errorf(CauseUnknownPoolHandle, handle, id, "no such element")
	}
	e.el.Reports++
	n := e.el.Reports
	p.mu.Unlock()
	h.mu.Unlock()
	if n < h.cfg.MaxBadPEReports {
		return false, nil
	}
	if _, err := h.Remove(handle, id, ReasonUnreachable); err != nil {
		return false, fmt.Errorf("remove after %d reports: %w", n, err)
	}
	return true, nil
}

// ObserveFlows tells the handlespace that the data plane steered n new
// flows to an element. For the degradation policies each flow adds the
// element's load degradation to its FlowDegradation — the data plane's
// counterpart of a handle resolution's selection — until its next
// re-registration resets it, and the pool's steering weights change
// (published as WeightsChanged). Other policies ignore it; changed says
// whether anything changed.
func (h *Handlespace) ObserveFlows(handle string, id uint32, n uint64) (changed bool, err error) {
	if n == 0 {
		return false, nil
	}
	h.mu.Lock()
	p := h.lookupPool(handle)
	if p == nil {
		h.mu.Unlock()
		return false, h.errorf(CauseUnknownPoolHandle, handle, id, "no such pool")
	}
	p.mu.Lock()
	e := p.byID[id]
	if e == nil || e.el.State != Active || !p.alg.FlowsDegrade {
		p.mu.Unlock()
		h.mu.Unlock()
		return false, nil
	}
	add := uint64(e.Settings.LoadDegradation) * n
	next := uint64(e.FlowDegradation) + add
	if next > policy.MaxLoad {
		next = policy.MaxLoad
	}
	changed = uint32(next) != e.FlowDegradation
	if changed {
		e.FlowDegradation = uint32(next)
		p.version++
	}
	p.mu.Unlock()
	if changed {
		h.publish(handle, Event{Kind: WeightsChanged, ID: id})
	}
	h.mu.Unlock()
	return changed, nil
}

// Sweep removes every element whose registration life ended at or before
// now (calling Config.OnExpire for each) and ends drains that timed out.
// It returns the number of expired registrations.
func (h *Handlespace) Sweep(now time.Time) int {
	limit := now.UnixNano()
	h.mu.Lock()
	for len(h.heap) > 0 && h.heap[0].deadline <= limit {
		e := h.heap[0].e
		h.heap.remove(e)
		p := e.pool
		p.mu.Lock()
		var ev Event
		if e.el.State == Draining {
			if i := p.drainIndex(e.ID); i >= 0 && p.drain[i] == e {
				p.drain = slices.Delete(p.drain, i, i+1)
			}
			ev = Event{Kind: Removed, ID: e.ID, Reason: ReasonDrained}
		} else {
			h.detachLocked(p, e)
			h.expired = append(h.expired, expiredPE{p.handle, e.el})
			ev = Event{Kind: Removed, ID: e.ID, Reason: ReasonExpired}
		}
		empty := p.finishLocked()
		p.mu.Unlock()
		if empty {
			h.dropPool(p)
		}
		h.publish(p.handle, ev)
	}
	h.dropEmptiedLocked()
	expired := h.expired
	h.expired = h.expired[:0]
	h.mu.Unlock()
	if h.cfg.OnExpire != nil {
		for _, x := range expired {
			h.cfg.OnExpire(x.handle, x.pe)
		}
	}
	clear(expired) // drop references, keep the buffer
	return len(expired)
}

// NextDeadline returns the earliest expiry or drain end, for the caller's
// timer.
func (h *Handlespace) NextDeadline() (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.heap) == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, h.heap[0].deadline), true
}

func (h *Handlespace) setDeadline(e *pe, t time.Time) {
	if t.IsZero() {
		h.heap.remove(e)
		e.deadline = 0
		return
	}
	e.deadline = t.UnixNano()
	if e.heapIdx >= 0 {
		h.heap.update(e)
	} else {
		h.heap.push(e)
	}
}

// Resolve selects up to n active elements of the pool by its policy and
// appends them to dst (n == 0: MaxHandleResolutionItems; n == All or
// negative: all). It advances the policy state of the first MaxIncrement
// of them. It does not allocate when dst has room.
func (h *Handlespace) Resolve(handle string, n int, dst []PoolElement) ([]PoolElement, error) {
	p := h.lookupPool(handle)
	if p == nil {
		return dst, &Error{Cause: CauseUnknownPoolHandle, Handle: handle}
	}
	switch {
	case n == 0:
		n = h.cfg.MaxHandleResolutionItems
	case n < 0:
		n = int(^uint(0) >> 1)
	}
	p.mu.Lock()
	if p.dead || len(p.order) == 0 {
		p.mu.Unlock()
		return dst, &Error{Cause: CauseUnknownPoolHandle, Handle: handle}
	}
	maxInc := h.cfg.MaxIncrement
	if maxInc <= 0 {
		maxInc = p.alg.DefaultMaxIncrement
	}
	var sel []*pe
	if p.alg.Kind == policy.Ordered {
		sel = p.selectOrdered(n, maxInc)
	} else {
		sel = p.selectWeighted(n, maxInc)
	}
	for _, e := range sel {
		dst = append(dst, e.el)
	}
	clear(sel)
	p.mu.Unlock()
	return dst, nil
}

func (p *pool) selectOrdered(n, maxInc int) []*pe {
	k := min(n, len(p.order))
	sel := append(p.scratch[:0], p.order[:k]...)
	p.scratch = sel
	for _, e := range sel[:min(k, maxInc)] {
		i := slices.Index(p.order, e) // within the first k
		p.order = slices.Delete(p.order, i, i+1)
		e.Seq = p.seq
		p.seq++
		e.Selected++
		if p.alg.Update != nil {
			p.alg.Update(&e.Entry)
		}
		p.insertOrdered(e)
	}
	return sel
}

// selectWeighted draws without replacement. A draw binary-searches the
// running sums and redraws if it hits an element already taken, which
// samples exactly the remaining elements' distribution; after a few misses
// (the taken elements hold most of the weight) it falls back to a linear
// scan over the rest.
func (p *pool) selectWeighted(n, maxInc int) []*pe {
	if p.stale {
		p.prefix = p.prefix[:0]
		var run uint64
		for _, e := range p.order {
			run += e.Value
			p.prefix = append(p.prefix, run)
		}
		p.stale = false
	}
	sel := p.scratch[:0]
	total := p.valueSum
	if total == 0 {
		// Every weight is 0: none is preferred, so all are equally
		// likely. Drawing none answered the PU "unknown pool handle"
		// for a pool that exists (issue 19 item 8).
		for len(sel) < n && len(sel) < len(p.order) {
			if e := p.order[p.rng.Uint64()%uint64(len(p.order))]; !e.picked {
				e.picked = true
				sel = append(sel, e)
			}
		}
	}
draw:
	for len(sel) < n && total > 0 {
		for range 8 {
			r := p.rng.Uint64() % p.valueSum
			i, _ := slices.BinarySearch(p.prefix, r+1) // first running sum > r
			if e := p.order[i]; !e.picked {
				e.picked = true
				total -= e.Value
				sel = append(sel, e)
				continue draw
			}
		}
		r := p.rng.Uint64() % total
		for _, e := range p.order {
			if e.picked || e.Value == 0 {
				continue
			}
			if r < e.Value {
				e.picked = true
				total -= e.Value
				sel = append(sel, e)
				break
			}
			r -= e.Value
		}
	}
	for i, e := range sel {
		e.picked = false
		e.Seq = p.seq
		p.seq++
		e.Selected++
		if i < maxInc && p.alg.Update != nil {
			p.alg.Update(&e.Entry)
			v := p.alg.Value(&e.Entry)
			p.valueSum += v - e.Value
			e.Value = v
			p.stale = true
		}
	}
	p.scratch = sel
	return sel
}

// insert adds e to the selection order (and the value sum).
func (p *pool) insert(e *pe) {
	if p.alg.Kind == policy.Weighted {
		e.Value = p.alg.Value(&e.Entry)
		p.valueSum += e.Value
		p.stale = true
	}
	p.insertOrdered(e)
}

func (p *pool) insertOrdered(e *pe) {
	less := p.alg.Less
	lo, hi := 0, len(p.order)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if less(&e.Entry, &p.order[m].Entry) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	p.order = slices.Insert(p.order, lo, e)
}

// remove takes e out of the selection order; it must be called before e's
// ordering keys change.
func (p *pool) remove(e *pe) {
	less := p.alg.Less
	lo, hi := 0, len(p.order)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if less(&p.order[m].Entry, &e.Entry) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	i := lo
	if i >= len(p.order) || p.order[i] != e {
		i = slices.Index(p.order, e) // defensive: order keys changed
		if i < 0 {
			return
		}
	}
	p.order = slices.Delete(p.order, i, i+1)
	if p.alg.Kind == policy.Weighted {
		p.valueSum -= e.Value
		p.stale = true
	}
}

// resort rebuilds the order after a policy change of a lone element.
func (p *pool) resort() {
	p.valueSum = 0
	old := p.order
	p.order = nil
	for _, e := range old {
		p.insert(e)
	}
}

func (p *pool) drainIndex(id uint32) int {
	for i, e := range p.drain {
		if e.ID == id {
			return i
		}
	}
	return -1
}

// Lookup returns a copy of an active or draining element.
func (h *Handlespace) Lookup(handle string, id uint32) (PoolElement, bool) {
	p := h.lookupPool(handle)
	if p == nil {
		return PoolElement{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.byID[id]; e != nil {
		return e.el, true
	}
	if i := p.drainIndex(id); i >= 0 {
		return p.drain[i].el, true
	}
	return PoolElement{}, false
}

// Len returns the number of active elements.
func (h *Handlespace) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count
}

// Pools returns the handles of pools that have elements (active or
// draining), sorted.
func (h *Handlespace) Pools() []string {
	var out []string
	h.eachPool(func(k string, p *pool) {
		p.mu.Lock()
		if len(p.order)+len(p.drain) > 0 {
			out = append(out, k)
		}
		p.mu.Unlock()
	})
	slices.Sort(out)
	return out
}

// Elements returns copies of a pool's active elements in identifier order.
func (h *Handlespace) Elements(handle string) []PoolElement {
	p := h.lookupPool(handle)
	if p == nil {
		return nil
	}
	p.mu.Lock()
	out := make([]PoolElement, 0, len(p.order))
	for _, e := range p.order {
		out = append(out, e.el)
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b PoolElement) int { return int64cmp(int64(a.ID), int64(b.ID)) })
	return out
}

func int64cmp(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Range calls fn for every active element in (handle, identifier) order,
// for handle table transfers and audits, until fn returns false. Pools are
// copied one at a time, so fn may call back into the handlespace.
func (h *Handlespace) Range(fn func(handle string, pe PoolElement) bool) {
	for _, handle := range h.Pools() {
		for _, el := range h.Elements(handle) {
			if !fn(handle, el) {
				return
			}
		}
	}
}

// TakeOver makes newHome the home registrar of every element whose home
// is oldHome (ENRP takeover) and returns how many moved.
func (h *Handlespace) TakeOver(oldHome, newHome uint32) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	h.eachPool(func(_ string, p *pool) {
		p.mu.Lock()
		for _, e := range p.order {
			if e.el.Home == oldHome {
				e.el.Home = newHome
				h.owners[oldHome] -= e.sum
				h.owners[newHome] += e.sum
				n++
			}
		}
		p.mu.Unlock()
	})
	if h.owners[oldHome] == 0 {
		delete(h.owners, oldHome)
	}
	return n
}
