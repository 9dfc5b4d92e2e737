package enrp

import (
	"sort"
	"time"

	"github.com/rspxdp/rspxdp/selector"
)

var timeZero time.Time

// ENRP among registrars: presence and audit, mentor synchronisation,
// handle updates and takeover (RFC 5353).

// heard records that a known peer spoke on link and returns its record,
// or nil: a sender that is not a peer (see join), or a link bound to
// another peer (a connection speaks for one registrar only).
func (c *Core) heard(link LinkID, h Header) *peer {
	return c.hear(link, h, nil)
}

// join is heard for a Presence: the one message that may make its sender a
// peer, and only when it is plausible (issue 19 item 2, issue 14 item 7).
func (c *Core) join(link LinkID, m Presence) *peer { return c.hear(link, m.Header, &m) }

func (c *Core) hear(link LinkID, h Header, presence *Presence) *peer {
	if h.Sender == 0 || h.Sender == c.cfg.ID {
		return nil
	}
	if bound, ok := c.links[link]; link != 0 && ok && bound != h.Sender {
		c.counts.PeersRefused++
		c.log.Debug("ENRP message ignored: the connection belongs to another peer", "sender", idString(h.Sender), "peer", idString(bound))
		return nil
	}
	p := c.peers[h.Sender]
	if p == nil {
		if reason := c.refuseJoin(h, presence); reason != "" {
			c.counts.PeersRefused++
			c.log.Debug("ENRP sender not made a peer", "sender", idString(h.Sender), "reason", reason)
			return nil
		}
		p = &peer{id: h.Sender}
		c.peers[h.Sender] = p
		c.log.Info("peer joined", "peer", idString(h.Sender))
	}
	if p.dead {
		p.dead = false
		c.log.Info("peer is back", "peer", idString(h.Sender))
	}
	p.lastHard = c.now
	p.noRespDeadline = timeZero
	p.leaving = false
	if link != 0 {
		// The first link stays the one we send on until it closes: one
		// ordered path per peer, so its Presence checksums never run
		// ahead of the Handle Updates they count.
		if p.link == 0 {
			p.link = link
		}
		c.links[link] = p.id
	}
	if p.takeover != nil {
		c.log.Info("takeover aborted: target alive", "peer", idString(p.id))
		p.takeover = nil
	}
	return p
}

func (c *Core) onPresence(link LinkID, m Presence) {
	if m.Leaving {
		c.onLeavingPresence(link, m)
		return
	}
	p := c.join(link, m)
	if p == nil {
		return
	}
	if m.Info.ID == p.id {
		p.info = m.Info
	}
	if m.Reply {
		c.toPeer(p, c.presence(p.id, false))
	}
	if !c.synced {
		c.startMentorSync(p)
		return
	}
	// Audit: the peer's checksum over what it owns against ours over what we
	// think it owns. A mismatch resynchronises that part only.
	// Two mismatches in a row are required: one can be an update still in
	// flight on the peer's other connection.
	if m.Checksum == c.hs.Checksum(p.id) {
		p.mismatches, p.audited = 0, false
		if p.auditFails > 0 {
			c.log.Info("audit converged", "peer", idString(p.id), "after", p.auditFails)
			p.auditFails, p.auditNext = 0, time.Time{}
		}
		return
	}
	p.mismatches++
	// An audit that cannot converge (we refuse some of the peer's PEs,
	// e.g. for pool consistency or capacity) backs off instead of asking
	// for the table every other heartbeat forever. The first Presence
	// after an audit judges it: the peer still announcing the checksum
	// the audit was to reach, ours still another, is an audit that cannot
	// converge. A new checksum means the peer's PEs changed (or the audit
	// raced an update in flight): no back-off, audit again as usual.
	if p.audited || p.auditFails > 0 && m.Checksum != p.auditWant {
		if p.audited && m.Checksum == p.auditWant {
			c.auditStuck(p, m.Checksum)
		} else {
			p.auditFails, p.auditNext = 0, time.Time{}
		}
		p.audited = false
	}
	if p.mismatches >= 2 && !p.reqPending && !c.now.Before(p.auditNext) {
		p.mismatches = 0
		if p.auditFails == 0 {
			c.log.Info("audit mismatch: resynchronising peer's PEs", "peer", idString(p.id),
				"theirs", m.Checksum, "ours", c.hs.Checksum(p.id))
		}
		p.auditWant = m.Checksum
		c.requestTable(p, true)
	}
}

// maxAuditBackoff bounds the back-off between audits that do not converge,
// in peer heartbeat cycles.
const maxAuditBackoff = 32

// auditStuck backs off the audits of p, which did not bring our checksum
// of its PEs to theirs.
func (c *Core) auditStuck(p *peer, theirs uint16) {
	got := c.hs.Checksum(p.id)
	p.auditFails++
	c.counts.AuditsNotConverged++
	wait := c.cfg.PeerHeartbeatCycle << min(p.auditFails, 5)
	wait = min(wait, maxAuditBackoff*c.cfg.PeerHeartbeatCycle)
	p.auditNext = c.now.Add(wait)
	if p.auditFails == 1 {
		// Said once per episode; AuditsNotConverged counts every one.
		c.log.Warn("audit does not converge: this registrar refuses some of the peer's PEs (see \"replicated PE refused\"); auditing it again with back-off",
			"peer", idString(p.id), "theirs", theirs, "ours", got, "next", wait)
	}
}

func (c *Core) startMentorSync(p *peer) {
	c.mentor = p.id
	c.synced = true // one mentor is enough; audits repair the rest
	c.log.Info("synchronising handlespace from mentor", "mentor", idString(p.id))
	c.toPeer(p, ListRequest{Header: Header{Sender: c.cfg.ID, Receiver: p.id}})
	c.requestTable(p, false)
}

// MarkSynced tells a registrar without peers configured that there is no
// mentor to wait for.
func (c *Core) MarkSynced() { c.synced = true }

func (c *Core) requestTable(p *peer, ownOnly bool) {
	p.reqPending, p.reqOwnOnly = true, ownOnly
	p.reqSeen = map[peKey]bool{}
	p.reqSentAt = c.now
	c.toPeer(p, HandleTableRequest{Header: Header{Sender: c.cfg.ID, Receiver: p.id}, OwnOnly: ownOnly})
}

func (c *Core) onHandleTableRequest(link LinkID, m HandleTableRequest) {
	p := c.peers[m.Sender]
	observer := p == nil && m.Sender != 0 && m.Sender != c.cfg.ID
	if observer {
		// A registrar introduces itself with a Presence before it asks
		// for a table; a sender never heard of is an observer, such as
		// `rspxdp status` dumping the handlespace. It is answered on its
		// link but not made a peer: it would otherwise be declared dead
		// and "taken over" once it left.
		p = c.observer(m.Sender)
	} else if p = c.heard(link, m.Header); p == nil {
		return
	}
	// A request while a previous table is still being sent continues it;
	// otherwise a new one starts from a fresh key list.
	// A table abandoned by the requester (it gives up after
	// max-time-no-response without progress) is not continued: answering a
	// fresh request with the tail of an old table would make the requester
	// drop everything in the head.
	stale := c.now.Sub(p.htServedAt) > c.cfg.PeerMaxTimeNoResponse/2
	if p.htKeys == nil || p.htOwnOnly != m.OwnOnly || stale {
		p.htKeys = c.keys(m.OwnOnly)
		p.htOwnOnly = m.OwnOnly
	}
	p.htServedAt = c.now
	resp := HandleTableResponse{Header: Header{Sender: c.cfg.ID, Receiver: p.id}}
	n, size := 0, enrpHeaderSize
	idx := map[string]int{}
	for n < c.cfg.MaxPEsPerResponse && len(p.htKeys) > 0 {
		k := p.htKeys[0]
		pe, ok := c.lookup(k.handle, k.id)
		if !ok || (m.OwnOnly && pe.Home != c.cfg.ID) {
			p.htKeys = p.htKeys[1:]
			continue
		}
		i, ok := idx[k.handle]
		grow := peWireSize(pe, true)
		if !ok {
			grow += handleWireSize(k.handle)
		}
		if n > 0 && size+grow > maxMessageBudget {
			break // the rest follows with the more-to-send flag (sizes.go)
		}
		p.htKeys = p.htKeys[1:]
		size += grow
		if !ok {
			i = len(resp.Pools)
			idx[k.handle] = i
			resp.Pools = append(resp.Pools, Pool{Handle: k.handle})
		}
		resp.Pools[i].PEs = append(resp.Pools[i].PEs, pe)
		n++
	}
	resp.More = len(p.htKeys) > 0
	if !resp.More {
		p.htKeys = nil
	}
	if observer {
		c.send(Output{Link: link, Msg: resp})
		return
	}
	c.toPeer(p, resp)
}

// maxObservers bounds the table transfers kept for observers.
const maxObservers = 64

// observer returns the table-transfer state of an observer, making room by
// forgetting the one served longest ago when there are too many.
func (c *Core) observer(id uint32) *peer {
	if o := c.observers[id]; o != nil {
		return o
	}
	if len(c.observers) >= maxObservers {
		var oldest *peer
		for _, o := range c.observers {
			if oldest == nil || o.htServedAt.Before(oldest.htServedAt) {
				oldest = o
			}
		}
		delete(c.observers, oldest.id)
	}
	o := &peer{id: id}
	c.observers[id] = o
	return o
}

func (c *Core) onHandleTableResponse(link LinkID, m HandleTableResponse) {
	p := c.heard(link, m.Header)
	if p == nil || !p.reqPending {
		return
	}
	if m.Reject {
		p.reqPending = false
		return
	}
	p.reqSentAt = c.now // progress: the timeout runs per chunk
	for _, pl := range m.Pools {
		for _, pe := range pl.PEs {
			if p.reqOwnOnly {
				pe.Home = p.id
			}
			if pe.Home == 0 {
				continue
			}
			p.reqSeen[peKey{pl.Handle, pe.ID}] = true
			c.importPE(pl.Handle, pe)
		}
	}
	if m.More {
		c.toPeer(p, HandleTableRequest{Header: Header{Sender: c.cfg.ID, Receiver: p.id}, OwnOnly: p.reqOwnOnly})
		return
	}
	if p.reqOwnOnly {
		// What we thought the peer owns but it does not list is gone.
		for _, e := range c.ownedBy(p.id) {
			if !p.reqSeen[peKey{e.handle, e.pe.ID}] {
				_, _ = c.hs.Remove(e.handle, e.pe.ID, selector.ReasonReplicated)
			}
		}
	}
	p.reqPending, p.reqSeen = false, nil
	if p.reqOwnOnly {
		p.audited = true // judged by the next Presence
		if p.auditFails > 0 {
			return // backing off: said once, in auditStuck
		}
	}
	c.log.Info("handle table synchronised", "peer", idString(p.id), "ownOnly", p.reqOwnOnly, "pes", c.hs.Len())
}

// importPE adds or refreshes a PE another registrar claims. Competing
// claims on one PE are settled by the rule every registrar applies alike
// (ownership.go): the newer claim wins, so a registrar that was away yields
// what a peer took meanwhile, instead of both keeping it.
func (c *Core) importPE(handle string, pe PoolElement) {
	k := peKey{handle, pe.ID}
	if pe.Epoch == 0 {
		pe.Epoch = c.epochNow() // rsplib carries none: as new as its arrival
	}
	if pe.Home == c.cfg.ID {
		if c.owned[k] == nil {
			// A peer tells us about a PE we own but do not know (we
			// restarted with the same ID): adopt it and verify it.
			c.adopt(handle, pe)
		}
		return
	}
	if cur, ok := c.hs.Lookup(handle, pe.ID); ok && cur.Home != pe.Home {
		if !claimOf(pe.Epoch, pe.Home).beats(claimOf(epochOf(cur), cur.Home)) {
			if c.owned[k] != nil {
				c.reassert(handle, k, pe.Home)
			}
			return
		}
		if c.owned[k] != nil {
			c.yield(k, pe.Home)
		}
	}
	if floor := c.replicaLifetimeFloor(); pe.Lifetime < floor {
		pe.Lifetime = floor
	}
	if _, err := c.hs.Update(handle, toSel(pe, false), c.now); err != nil {
		if cause, ok := selector.CauseOf(err); ok && cause == selector.CauseInconsistentPolicy && c.settlePolicy(handle, pe) {
			if _, err = c.hs.Update(handle, toSel(pe, false), c.now); err == nil {
				return
			}
		}
		c.log.Debug("replicated PE refused", "pool", handle, "pe", idString(pe.ID), "home", idString(pe.Home), "err", err)
	}
}

// adopt makes us home of pe and sends it a keep-alive with the home flag,
// so it re-registers with us; if it does not answer it is removed.
func (c *Core) adopt(handle string, pe PoolElement) {
	pe.Home = c.cfg.ID
	pe.Epoch = c.newClaim(pe.Epoch)
	if _, err := c.hs.Update(handle, toSel(pe, true), c.now); err != nil {
		c.log.Warn("adopting PE failed", "pool", handle, "pe", idString(pe.ID), "err", err)
		return
	}
	k := peKey{handle, pe.ID}
	s := c.owned[k]
	if s == nil {
		s = &peState{key: k}
		c.owned[k] = s
	}
	c.setLink(s, 0)
	s.asap, s.lifetime = pe.ASAP, pe.Lifetime
	c.sendKeepAlive(s, true)
}

func (c *Core) onHandleUpdate(link LinkID, m HandleUpdate) {
	p := c.heard(link, m.Header)
	if p == nil {
		return
	}
	pe := m.PE
	if pe.Home == 0 {
		pe.Home = p.id
	}
	switch m.Action {
	case AddPE:
		if p.reqPending && p.reqOwnOnly && pe.Home == p.id {
			// Registered after the peer listed its table: the final sweep
			// of the audit must not drop it.
			p.reqSeen[peKey{m.Handle, pe.ID}] = true
		}
		c.importPE(m.Handle, pe)
	case DelPE:
		cur, ok := c.lookup(m.Handle, pe.ID)
		if !ok || cur.Home != pe.Home {
			return // stale: the PE has moved home since
		}
		k := peKey{m.Handle, pe.ID}
		if c.owned[k] != nil {
			// Our PE deregistered through another registrar.
			c.unown(k)
			_, _ = c.hs.Deregister(m.Handle, pe.ID, c.now)
			return
		}
		if m.Drain {
			// Deregistered at its home: every node drains it alike, so
			// flows that ECMP sent through this node keep their PE.
			_, _ = c.hs.Deregister(m.Handle, pe.ID, c.now)
			return
		}
		_, _ = c.hs.Remove(m.Handle, pe.ID, selector.ReasonReplicated)
	}
}

func (c *Core) onListRequest(link LinkID, m ListRequest) {
	p := c.heard(link, m.Header)
	if p == nil {
		return
	}
	resp := ListResponse{Header: Header{Sender: c.cfg.ID, Receiver: p.id}}
	for _, id := range c.Peers() {
		if q := c.peers[id]; q.info.ID != 0 {
			resp.Servers = append(resp.Servers, q.info)
		}
	}
	c.toPeer(p, resp)
}

func (c *Core) onListResponse(link LinkID, m ListResponse) {
	if c.heard(link, m.Header) == nil || m.Reject {
		return
	}
	for _, si := range m.Servers {
		if si.ID == 0 || si.ID == c.cfg.ID || !si.ENRP.IsValid() {
			continue
		}
		if q := c.peers[si.ID]; q != nil && q.link != 0 {
			continue
		}
		c.send(Output{ConnectPeer: true, Dial: si.ENRP, Peer: si.ID})
	}
}

// checkPeers runs the peer timers: a peer silent past max-time-last-heard
// is asked for a Presence; one that stays silent past max-time-no-response
// is dead and taken over.
func (c *Core) checkPeers() {
	for _, id := range sortedPeerIDs(c.peers) {
		p := c.peers[id]
		if p.reqPending && c.now.Sub(p.reqSentAt) > c.cfg.PeerMaxTimeNoResponse {
			p.reqPending = false // lost answer; the next Presence re-audits
		}
		if p.takeover != nil && !c.now.Before(p.takeover.expires) {
			c.log.Warn("takeover expired waiting for acks; completing", "target", idString(p.id), "missing", len(p.takeover.acks))
			c.finishTakeover(p)
			continue
		}
		if p.dead {
			if p.takeover == nil && p.ackedFor == 0 && !p.takeoverAt.IsZero() && !c.now.Before(p.takeoverAt) {
				// Nobody with a lower ID took it over: we do.
				p.takeoverAt = timeZero
				c.startTakeover(p)
			}
			if p.takeover == nil && p.ackedFor != 0 && c.now.Sub(p.ackedAt) > 2*c.cfg.TakeoverExpiry {
				// The peer we agreed to never completed: try ourselves.
				p.ackedFor = 0
				c.startTakeover(p)
			}
			continue
		}
		switch {
		case !p.noRespDeadline.IsZero() && !c.now.Before(p.noRespDeadline):
			c.log.Warn("peer dead: no response", "peer", idString(p.id))
			p.dead = true
			p.noRespDeadline = timeZero
			if p.ackedFor == 0 {
				c.takeoverOrDefer(p)
			}
		case p.noRespDeadline.IsZero() && c.now.Sub(p.lastHard) > c.cfg.PeerMaxTimeLastHeard:
			p.noRespDeadline = c.now.Add(c.cfg.PeerMaxTimeNoResponse)
			if p.link != 0 {
				c.toPeer(p, c.presence(p.id, true))
			}
		}
	}
}

// takeoverOrDefer starts the takeover of a dead peer at once when this
// registrar has the lowest ID among the connected survivors, the one RFC
// 5353's conflict rule lets win anyway, and otherwise defers it by the
// takeover expiry. Every survivor starting its own takeover costs O(N²)
// messages per death (N-1 Init Takeovers each, and their acks: 7,812 with
// 64 registrars in TestScaleSimulation); one takeover costs O(N). A deferred
// takeover starts only if no other registrar's Init Takeover or Takeover
// Server arrived meanwhile, so a lowest survivor that is itself gone or cut
// off delays the takeover but does not prevent it. Only deaths found by the
// timers defer: every survivor runs the same timers, so the lowest finds
// the death as soon as the others do. A peer's explicit leave is taken
// over at once by whoever hears it (it may not have reached the lowest).
func (c *Core) takeoverOrDefer(p *peer) {
	for _, id := range c.Peers() {
		if id != p.id && id < c.cfg.ID && c.peers[id].link != 0 {
			p.takeoverAt = c.now.Add(c.cfg.TakeoverExpiry)
			return
		}
	}
	c.startTakeover(p)
}

func (c *Core) startTakeover(target *peer) {
	t := &takeover{acks: map[uint32]bool{}, expires: c.now.Add(c.cfg.TakeoverExpiry)}
	for _, id := range c.Peers() {
		if id != target.id && c.peers[id].link != 0 {
			t.acks[id] = true
		}
	}
	target.takeover = t
	c.log.Warn("takeover initiated", "target", idString(target.id), "acksNeeded", len(t.acks))
	if len(t.acks) == 0 {
		c.finishTakeover(target)
		return
	}
	for id := range t.acks {
		q := c.peers[id]
		c.toPeer(q, InitTakeover{Header: Header{Sender: c.cfg.ID, Receiver: id}, Target: target.id})
	}
}

func (c *Core) finishTakeover(target *peer) {
	target.takeover = nil
	c.toAllPeers(func(h Header) Message { return TakeoverServer{Header: h, Target: target.id} })
	adopted := c.ownedBy(target.id)
	for _, e := range adopted {
		c.adopt(e.handle, e.pe)
	}
	c.log.Warn("takeover complete", "target", idString(target.id), "adoptedPEs", len(adopted))
	c.counts.Takeovers++
	c.counts.TakeoverAdoptedPEs += uint64(len(adopted))
	c.tellLeaver(target)
	c.dropPeer(target)
}

func (c *Core) dropPeer(p *peer) {
	delete(c.peers, p.id)
	c.log.Info("peer left", "peer", idString(p.id))
}

func (c *Core) onInitTakeover(link LinkID, m InitTakeover) {
	p := c.heard(link, m.Header)
	if p == nil {
		return
	}
	if m.Target == c.cfg.ID {
		c.log.Warn("peer is taking us over: answering with presence", "peer", idString(p.id))
		c.broadcastPresence(false)
		return
	}
	ack := InitTakeoverAck{Header: Header{Sender: c.cfg.ID, Receiver: p.id}, Target: m.Target}
	t := c.peers[m.Target]
	if t == nil {
		c.toPeer(p, ack)
		return
	}
	if t.takeover != nil {
		// Competing takeovers: the lower server ID wins (as rsplib does).
		if p.id > c.cfg.ID {
			c.log.Info("competing takeover: we continue (lower ID)", "target", idString(m.Target), "other", idString(p.id))
			return
		}
		c.log.Info("competing takeover: yielding to lower ID", "target", idString(m.Target), "winner", idString(p.id))
		t.takeover = nil
	}
	t.ackedFor, t.ackedAt = p.id, c.now
	t.dead = true
	c.toPeer(p, ack)
}

func (c *Core) onInitTakeoverAck(link LinkID, m InitTakeoverAck) {
	p := c.heard(link, m.Header)
	if p == nil {
		return
	}
	t := c.peers[m.Target]
	if t == nil || t.takeover == nil {
		return
	}
	delete(t.takeover.acks, p.id)
	if len(t.takeover.acks) == 0 {
		c.finishTakeover(t)
	}
}

func (c *Core) onTakeoverServer(link LinkID, m TakeoverServer) {
	p := c.heard(link, m.Header)
	if p == nil || m.Target == c.cfg.ID {
		return
	}
	moved := c.hs.TakeOver(m.Target, p.id)
	c.log.Warn("peer taken over", "target", idString(m.Target), "by", idString(p.id), "pes", moved)
	if t := c.peers[m.Target]; t != nil {
		c.dropPeer(t)
	}
}

// refuseJoin says why an unknown sender may not become a peer, or "".
// Evidence is a Presence whose Server Information names the sender and an
// ENRP endpoint (what rsplib requires too); anything else from an unknown
// sender (an ASAP message on the ENRP port decodes as one with a garbage
// sender) is ignored. The peer table is bounded, so a flood of invented
// senders cannot grow it or the takeovers their silence would start.
func (c *Core) refuseJoin(h Header, m *Presence) string {
	switch {
	case m == nil:
		return "only a Presence introduces a peer"
	case m.Info.ID != h.Sender:
		return "Presence's Server Information names another server"
	case !m.Info.ENRP.IsValid():
		return "Presence names no ENRP endpoint"
	case len(c.peers) >= c.cfg.MaxPeers:
		c.log.Warn("peer refused: peer table full", "sender", idString(h.Sender), "max", c.cfg.MaxPeers)
		return "peer table full"
	}
	return ""
}

func sortedPeerIDs(m map[uint32]*peer) []uint32 {
	ids := make([]uint32, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}
