package enrp

import (
	"cmp"
	"maps"
	"slices"
	"time"

	"github.com/rspxdp/rspxdp/selector"
)

// One owner per PE (issue 19 item 6, issue 15 item 7, issue 14 item 8).
//
// Every PE carries an epoch: when its home took it (a registration that
// made that registrar its home, or a takeover), in milliseconds by the
// home's clock, replicated in ENRP (msg.ParamEpoch). When two registrars
// claim one PE, every registrar keeps the claim with the higher epoch (the
// lower server ID on a tie), the one that loses yields its home record, and
// the winner re-asserts its claim to a peer that sent a losing one, so the
// views converge within one exchange whatever order the messages arrive in.
// A re-registration at the home keeps the epoch; a PE moving to another
// registrar gets a newer one there, even against a clock behind the old
// home's.
//
// A registrar that was stalled (SIGSTOP, a VM pause: its clock jumped past
// its own timers) processes messages that queued while it was away: a
// PE's re-registration sent then is older than the registration the PE
// made elsewhere when it got no answer. So for a short while after a stall
// its claims date from before the stall, it gives the peers a fresh
// hearing instead of declaring them all dead, restarts its keep-alive
// timeouts instead of removing PEs whose acks are still queued, and asks
// every peer for the PEs it owns, so that what moved is yielded at once.
// Until then it holds back its Handle Updates about its own PEs: an rsplib
// peer carries no epochs and takes any update for the truth, so the update
// of a re-registration that queued on a moved PE's old association, or the
// delete when that association is closed, would take the PE from its new
// home there (scenario 70 in vm/). What is still ours afterwards goes out
// then (flushHeld).
//
// The same ordering settles a pool created at two registrars at once with
// different policies: the pool keeps the policy of its oldest PE, and the
// PEs of the other policy are removed, their home telling them with cause
// 5 (Inconsistent Pooling Policy).

// claim is one registrar's claim on a PE (or a PE's claim on its pool's
// policy, with id).
type claim struct {
	epoch uint64
	home  uint32
	id    uint32
}

func claimOf(epoch uint64, home uint32) claim { return claim{epoch: epoch, home: home} }

// beats reports whether a is the newer claim on a PE.
func (a claim) beats(b claim) bool {
	if a.epoch != b.epoch {
		return a.epoch > b.epoch
	}
	return a.home < b.home
}

// older reports whether a came first, for a pool's policy.
func (a claim) older(b claim) bool {
	switch {
	case a.epoch != b.epoch:
		return a.epoch < b.epoch
	case a.home != b.home:
		return a.home < b.home
	}
	return a.id < b.id
}

func epochOf(el selector.PoolElement) uint64 {
	if a, ok := el.UserData.(asapEndpoint); ok {
		return a.epoch
	}
	return 0
}

func epochAt(t time.Time) uint64 { return uint64(max(t.UnixMilli(), 1)) }

// epochNow is the epoch of a claim made now: while recovering from a
// stall, the time before it.
func (c *Core) epochNow() uint64 {
	if c.recovering() {
		return epochAt(c.awayFrom)
	}
	return epochAt(c.now)
}

// newClaim is the epoch of a claim that takes a PE from one whose epoch is
// prev: newer than prev even if our clock is behind its home's.
func (c *Core) newClaim(prev uint64) uint64 {
	e := c.epochNow()
	if !c.recovering() && e <= prev {
		e = prev + 1
	}
	return e
}

// registrationEpoch returns the epoch a registration of (handle, id) at
// this registrar gets, or false when it must be ignored: one that queued
// while we were stalled, for a PE a peer has claimed since.
func (c *Core) registrationEpoch(handle string, id uint32) (uint64, uint32, bool) {
	cur, found := c.hs.Lookup(handle, id)
	switch {
	case !found:
		return c.epochNow(), 0, true
	case c.owned[peKey{handle, id}] != nil || cur.Home == c.cfg.ID:
		return max(epochOf(cur), 1), 0, true // a re-registration keeps its claim
	}
	e := c.newClaim(epochOf(cur))
	if !claimOf(e, c.cfg.ID).beats(claimOf(epochOf(cur), cur.Home)) {
		return 0, cur.Home, false
	}
	return e, 0, true
}

// yield gives up our home record of k to the newer claim of winner.
func (c *Core) yield(k peKey, winner uint32) {
	c.unown(k)
	c.counts.OwnershipYielded++
	c.log.Info("PE ownership yielded to a newer claim", "pool", k.handle, "pe", idString(k.id), "home", idString(winner))
}

// reassert tells peer, which sent an older claim on our PE k, ours.
func (c *Core) reassert(handle string, k peKey, peerID uint32) {
	p := c.peers[peerID]
	pe, ok := c.lookup(handle, k.id)
	if p == nil || p.link == 0 || !ok {
		return
	}
	c.toPeer(p, HandleUpdate{Header: Header{Sender: c.cfg.ID, Receiver: p.id}, Action: AddPE, Handle: handle, PE: pe})
}

// replicaLifetimeFloor is the least life a replicated PE gets: its home
// removes it explicitly, and one asking for a life shorter than the home's
// keep-alive period would otherwise expire at the peers between two of its
// Handle Updates (issue 19 item 8: a lifetime of 0).
func (c *Core) replicaLifetimeFloor() time.Duration {
	return max(minLifetime, 2*(c.cfg.KeepAliveInterval+c.cfg.KeepAliveTimeout))
}

// settlePolicy handles a replicated PE whose policy differs from its
// pool's here: if it is the pool's oldest claim, the PEs of the other
// policy go (ours told with cause 5) and it reports true; otherwise the PE
// is refused and its own home does the same on its side.
func (c *Core) settlePolicy(handle string, pe PoolElement) bool {
	c.counts.PolicyConflicts++
	els := c.hs.Elements(handle)
	in := claim{pe.Epoch, pe.Home, pe.ID}
	for _, el := range els {
		if el.ID != pe.ID && !in.older(claim{epochOf(el), el.Home, el.ID}) {
			c.log.Info("pool policy conflict: the pool's older policy stays", "pool", handle,
				"refused", idString(pe.ID), "home", idString(pe.Home), "policy", pe.Policy.Type.String(),
				"keeps", el.Policy.Type.String())
			return false
		}
	}
	for _, el := range els {
		if el.Policy.Type != pe.Policy.Type {
			c.evictForPolicy(handle, el)
		}
	}
	c.log.Warn("pool policy conflict: an older registration elsewhere wins", "pool", handle,
		"policy", pe.Policy.Type.String(), "from", idString(pe.Home), "removed", len(els))
	return true
}

// evictForPolicy removes el from its pool for losing a policy conflict. Our
// own PE is told with a Registration Response rejecting it with cause 5,
// and the peers with a delete.
func (c *Core) evictForPolicy(handle string, el selector.PoolElement) {
	k := peKey{handle, el.ID}
	if s := c.owned[k]; s != nil {
		c.send(Output{Link: s.link, Dial: s.asap, Msg: RegistrationResponse{Handle: handle, PEID: el.ID, Reject: true, Cause: CauseInconsistentPolicy}})
		c.log.Warn("PE removed: its pool's policy is another registrar's", "pool", handle, "pe", idString(el.ID))
		c.removeOwned(k, selector.ReasonReplicated)
		return
	}
	_, _ = c.hs.Remove(handle, el.ID, selector.ReasonReplicated)
}

// stallThreshold: a clock that jumped further than this between two calls
// means we were not running (the timer loop wakes at least every
// heartbeat). Never under a second, so a loaded machine's scheduling delays
// and GC pauses are not taken for stalls (with test timers of 100 ms they
// were, and the recovery's table requests made the load worse).
func (c *Core) stallThreshold() time.Duration {
	return max(2*c.cfg.PeerHeartbeatCycle, c.cfg.PeerMaxTimeLastHeard, time.Second)
}

func (c *Core) recovering() bool { return c.now.Before(c.recoverUntil) }

// advance moves the clock to now, noticing a stall, and sends what was
// held back once the recovery from one is over.
func (c *Core) advance(now time.Time) {
	if !now.After(c.now) {
		return
	}
	from := c.now
	c.now = now
	if gap := now.Sub(from); gap > c.stallThreshold() && !c.leave.active {
		c.recoverStall(from, gap)
	}
	if len(c.held) > 0 && !c.recovering() {
		c.flushHeld()
	}
}

// replicate sends u, about one of our PEs, to every peer, or holds it
// back while we recover from a stall.
func (c *Core) replicate(u HandleUpdate) {
	if c.recovering() {
		if c.held == nil {
			c.held = map[peKey]HandleUpdate{}
		}
		// The last update per PE is the one that counts.
		c.held[peKey{u.Handle, u.PE.ID}] = u
		return
	}
	c.toAllPeers(func(h Header) Message {
		m := u
		m.Header, m.PE = h, clonePE(u.PE)
		return m
	})
}

// flushHeld sends, after the recovery from a stall, the held updates that
// still hold: an add for a PE that is still ours (as it is now), a delete
// for one that nobody else has claimed meanwhile (gone here and not ours
// again). An update about a PE that a peer owns now is dropped.
func (c *Core) flushHeld() {
	held := c.held
	c.held = nil
	keys := slices.SortedFunc(maps.Keys(held), func(a, b peKey) int {
		return cmp.Or(cmp.Compare(a.handle, b.handle), cmp.Compare(a.id, b.id))
	})
	sent := 0
	for _, k := range keys {
		u := held[k]
		el, found := c.hs.Lookup(k.handle, k.id)
		ours := c.owned[k] != nil
		switch {
		case u.Action == AddPE && ours:
			pe, ok := c.lookup(k.handle, k.id)
			if !ok {
				continue
			}
			u.PE = pe
		case u.Action == DelPE && !ours && (!found || el.Home == c.cfg.ID):
		default:
			continue // a peer owns it now, or it is ours again
		}
		sent++
		c.replicate(u)
	}
	c.log.Info("recovered from the stall: replicated what is still ours", "held", len(held), "sent", sent)
}

// recoverStall runs when we find we were away for gap since from.
func (c *Core) recoverStall(from time.Time, gap time.Duration) {
	c.awayFrom, c.recoverUntil = from, c.now.Add(c.cfg.PeerHeartbeatCycle)
	c.counts.Stalls++
	c.log.Warn("registrar was stalled: re-checking ownership with its peers before acting on timers",
		"away", gap.Round(time.Millisecond), "peers", len(c.peers), "ownedPEs", len(c.owned))
	for _, id := range sortedPeerIDs(c.peers) {
		p := c.peers[id]
		if p.dead {
			continue
		}
		p.lastHard, p.noRespDeadline = c.now, timeZero
		if p.link != 0 && c.synced {
			c.requestTable(p, true)
		}
	}
	for _, s := range c.owned {
		if s.timer == timerKATimeout {
			c.schedule(s, timerKATimeout, c.now.Add(c.cfg.KeepAliveTimeout))
		}
	}
}
