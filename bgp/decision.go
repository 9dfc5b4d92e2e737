package bgp

import (
	"net/netip"
	"slices"
	"time"
)

// Reason says why a VIP prefix is announced or withdrawn; it is the
// "reason" label of the withdrawal metric and of the log lines.
type Reason string

// The reasons, in the order Evaluate checks them.
const (
	// ReasonShutdown: the node is stopping (SIGTERM) and withdraws first
	// so the router moves flows away before the data plane goes.
	ReasonShutdown Reason = "shutdown"
	// ReasonDataplaneDetached: the XDP program is not attached, so
	// traffic sent here would not be balanced.
	ReasonDataplaneDetached Reason = "dataplane-detached"
	// ReasonRegistrarDown: the embedded registrar is not running, so the
	// PE set would go stale.
	ReasonRegistrarDown Reason = "registrar-down"
	// ReasonTooFewPEs: no service on the prefix has the minimum number
	// of active PEs (all gone or draining).
	ReasonTooFewPEs Reason = "too-few-pes"
	// ReasonSettling: every condition holds, but not yet for the settle
	// time; the prefix is not announced yet.
	ReasonSettling Reason = "settling"
	// ReasonRemoved: the VIP is no longer configured (a reload).
	ReasonRemoved Reason = "vip-removed"
	// ReasonHealthy: every condition holds; the prefix is announced.
	ReasonHealthy Reason = "healthy"
)

// Health is one observation of the node, the Decider's whole input.
type Health struct {
	// DataplaneAttached is true while the XDP program is attached to
	// every configured interface.
	DataplaneAttached bool
	// RegistrarUp is true while the embedded registrar runs.
	RegistrarUp bool
	// ActivePEs is, per VIP prefix, the number of active PEs of the best
	// service on that address (a prefix carries every service of its
	// address; it stays announced while any of them can serve). A prefix
	// missing from the map has none.
	ActivePEs map[netip.Prefix]int
	// ShuttingDown is true once the node has been told to stop.
	ShuttingDown bool
	// Now is when the observation was made (for the settle time).
	Now time.Time
}

// Evaluate is the announcement rule for one prefix: announce only when the
// node is not stopping, the data plane is attached, the registrar is up and
// the prefix has at least minPEs active PEs. The reason names the first
// condition that fails, or ReasonHealthy.
func Evaluate(h Health, p netip.Prefix, minPEs int) (announce bool, why Reason) {
	switch {
	case h.ShuttingDown:
		return false, ReasonShutdown
	case !h.DataplaneAttached:
		return false, ReasonDataplaneDetached
	case !h.RegistrarUp:
		return false, ReasonRegistrarDown
	case h.ActivePEs[p] < max(minPEs, 1):
		return false, ReasonTooFewPEs
	}
	return true, ReasonHealthy
}

// Change is one decision to carry to the peers.
type Change struct {
	Prefix   netip.Prefix
	Announce bool // false: withdraw
	Reason   Reason
}

// Decider remembers which prefixes are announced and turns each Health
// observation into the changes from the previous one. It is not safe for
// concurrent use; Announcer serialises it.
type Decider struct {
	prefixes  []netip.Prefix
	minPEs    int
	settle    time.Duration
	since     map[netip.Prefix]time.Time // healthy without a break since
	announced map[netip.Prefix]bool
	reason    map[netip.Prefix]Reason
	// stopped latches shutdown: once the node withdrew for good, no
	// later observation announces again.
	stopped bool
}

// NewDecider returns a decider for prefixes (duplicates are folded), none
// of them announced yet. minPEs below 1 counts as 1: a VIP without a single
// active PE is never worth attracting traffic to. A prefix is announced
// only once it has been healthy for settle without a break (a node that
// just joined is still learning the handlespace from its ENRP peers, and
// a Maglev ring built from part of the PE set would send established
// flows to other PEs than the other nodes do); withdrawal is immediate.
func NewDecider(prefixes []netip.Prefix, minPEs int, settle time.Duration) *Decider {
	d := &Decider{minPEs: max(minPEs, 1), settle: settle, since: map[netip.Prefix]time.Time{},
		announced: map[netip.Prefix]bool{}, reason: map[netip.Prefix]Reason{}}
	d.SetPrefixes(prefixes)
	return d
}

// SetPrefixes replaces the managed prefixes (a reload changed the VIPs).
// It returns the withdrawals of announced prefixes that are gone; new ones
// are announced by a later Step once healthy.
func (d *Decider) SetPrefixes(prefixes []netip.Prefix) []Change {
	var ps []netip.Prefix
	for _, p := range prefixes {
		p = p.Masked()
		if !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	var out []Change
	for _, p := range d.prefixes {
		if slices.Contains(ps, p) {
			continue
		}
		if d.announced[p] {
			out = append(out, Change{Prefix: p, Announce: false, Reason: ReasonRemoved})
		}
		delete(d.announced, p)
		delete(d.reason, p)
		delete(d.since, p)
	}
	d.prefixes = ps
	return out
}

// Step evaluates every prefix against h and returns the announcements and
// withdrawals that differ from the current state, in prefix order, and
// makes them the current state. A prefix that was never announced and is
// still not to be is no change (nothing to withdraw).
func (d *Decider) Step(h Health) []Change {
	var out []Change
	if d.stopped {
		h.ShuttingDown = true
	}
	for _, p := range d.prefixes {
		ok, why := Evaluate(h, p, d.minPEs)
		switch {
		case !ok:
			delete(d.since, p)
		case d.announced[p]:
		case d.since[p].IsZero():
			d.since[p] = h.Now
			fallthrough
		default:
			if h.Now.Sub(d.since[p]) < d.settle {
				ok, why = false, ReasonSettling
			}
		}
		d.reason[p] = why
		if ok == d.announced[p] {
			continue
		}
		d.announced[p] = ok
		out = append(out, Change{Prefix: p, Announce: ok, Reason: why})
	}
	return out
}

// Prefixes returns every prefix the decider manages, in order.
func (d *Decider) Prefixes() []netip.Prefix { return slices.Clone(d.prefixes) }

// Announced reports whether p is currently announced.
func (d *Decider) Announced(p netip.Prefix) bool { return d.announced[p] }

// Reason returns the reason of p's last evaluation ("" before the first).
func (d *Decider) Reason(p netip.Prefix) Reason { return d.reason[p] }

// HostPrefix is the /32 or /128 of a VIP address.
func HostPrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen())
}

// undo reverts a change the speaker refused, so the next Step retries it.
func (d *Decider) undo(c Change) { d.announced[c.Prefix] = !c.Announce }

// Settle returns the settle time.
func (d *Decider) Settle() time.Duration { return d.settle }
