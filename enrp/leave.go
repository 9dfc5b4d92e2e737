package enrp

import "time"

// Graceful leave.
//
// RFC 5353 has no message for a registrar that shuts down: its peers find
// out by their timers (max-time-last-heard, then max-time-no-response) and
// only then take its PEs over. With the default timers that is 10 s in
// which the registrar still counts as alive (a takeover of another waits
// for its ack, it is listed to joining registrars) and in which its PEs
// that do not look for another registrar when their association closes
// have no working home. A leaving registrar
// therefore sends each peer a last Presence with the Leaving flag, a bit
// RFC 5353 leaves reserved. A peer that understands it marks the sender
// dead and starts the RFC takeover at once (Init Takeover, Init Takeover
// Ack, Takeover Server, Keep-Alives with the home flag), and the winner
// also sends Takeover Server to the leaving registrar, which then closes.
//
// The explicit flag, not the close of the ENRP connection, is the signal:
// a TCP connection also ends when a peer is cut off for reading too slowly,
// when a middlebox drops idle state, or when one of two redundant links
// flaps, while the peer itself lives on. Taking over a live registrar on
// such a close would move its PEs for nothing and race its keep-alives, so a
// closed connection is only redialled and the timers keep deciding
// liveness; only the peer itself can say it is going.
//
// Peers that ignore the flag (rsplib) still see the PEs move promptly: when
// no peer has taken over within ServerConfig.LeaveTimeout, the registrar
// closes its ASAP associations, and the PEs' ASAP endpoints register with
// another registrar of their list at once (the ENRP server hunt of RFC
// 5352), whose Handle Update then names the new home to every peer.

// leaveState is the leaving registrar's side.
type leaveState struct {
	active bool // Leave was called: no more ENRP or keep-alives from us
	// handedOver: a peer sent Takeover Server naming us, or there was
	// nothing to hand over.
	handedOver bool
	started    time.Time
}

// Leave starts a graceful leave: every live peer is sent a Presence with
// the Leaving flag and the core goes quiet (no Presence, announces,
// keep-alives, takeovers, replication; registrations are not answered, so
// PEs register elsewhere once their association closes). HandedOver
// reports when a peer has taken the PEs over.
func (c *Core) Leave() {
	if c.leave.active {
		return
	}
	var told int
	for _, id := range c.Peers() {
		p := c.peers[id]
		if p.link == 0 {
			continue
		}
		pr := c.presence(id, false)
		pr.Leaving = true
		c.toPeer(p, pr)
		told++
	}
	c.leave = leaveState{active: true, started: c.now, handedOver: told == 0 || len(c.owned) == 0}
	c.log.Info("leaving: asking peers to take over our PEs", "peers", told, "ownedPEs", len(c.owned))
}

// Leaving reports whether Leave was called.
func (c *Core) Leaving() bool { return c.leave.active }

// HandedOver reports whether, after Leave, a peer has taken this
// registrar's PEs over (or there was no peer or no PE to hand over).
func (c *Core) HandedOver() bool { return c.leave.handedOver }

// stepLeaving filters what a leaving core still processes; it reports
// whether m was consumed. Resolutions and keep-alive acks are answered as
// usual (they change nothing peers must hear of); everything that would
// replicate, or make peers think we are back, is dropped.
func (c *Core) stepLeaving(m Message) bool {
	switch m := m.(type) {
	case HandleResolution, EndpointKeepAliveAck, Unrecognized:
		return false
	case Registration:
		// Unanswered: the PE registers elsewhere once its association
		// closes. A rejection would be final for it.
		c.log.Info("registration not answered: leaving", "pool", m.Handle, "pe", idString(m.PE.ID))
	case TakeoverServer:
		if m.Target == c.cfg.ID && !c.leave.handedOver {
			c.leave.handedOver = true
			c.log.Info("leaving: PEs taken over", "by", idString(m.Sender), "after", c.now.Sub(c.leave.started))
		}
	default:
		c.log.Debug("leaving: message not processed", "type", msgName(m))
	}
	return true
}

// onLeavingPresence handles a peer's Presence with the Leaving flag: the
// peer is dead from now and its PEs are claimed without waiting for the
// timers. If another registrar's claim was already acked, that one goes on.
func (c *Core) onLeavingPresence(link LinkID, m Presence) {
	if m.Sender == 0 || m.Sender == c.cfg.ID {
		return
	}
	p := c.peers[m.Sender]
	if bound, ok := c.links[link]; link != 0 && ok && bound != m.Sender {
		return // a connection speaks for one registrar only
	}
	if p != nil && p.link != 0 && link != 0 && c.links[link] != p.id {
		// The peer's own connection is up and this is not it: a forged
		// leave must not hand its PEs around (issue 19 item 6).
		c.counts.PeersRefused++
		c.log.Warn("leaving Presence ignored: not on the peer's connection", "peer", idString(p.id))
		return
	}
	if p == nil {
		if len(c.ownedBy(m.Sender)) == 0 {
			// Gone already (another registrar's Takeover Server overtook
			// this Presence on its other connection) or never ours to
			// care about.
			return
		}
		// Known only through its PEs (a table from the mentor): still take
		// them over.
		p = &peer{id: m.Sender}
		c.peers[m.Sender] = p
	}
	p.leaving = true
	if p.link == 0 && link != 0 {
		p.link = link // to tell it when its PEs are ours
		c.links[link] = p.id
	}
	if p.dead {
		if p.takeover == nil && p.ackedFor == 0 && !p.takeoverAt.IsZero() {
			// Our takeover was deferred to a lower survivor
			// (takeoverOrDefer); the peer's own leave says now.
			p.takeoverAt = timeZero
			c.startTakeover(p)
		}
		return
	}
	p.dead = true
	p.noRespDeadline = timeZero
	c.log.Warn("peer leaving: taking its PEs over now", "peer", idString(p.id), "pes", len(c.ownedBy(p.id)))
	if p.takeover == nil && p.ackedFor == 0 {
		c.startTakeover(p)
	}
}

// tellLeaver sends the Takeover Server of a completed takeover to its
// target too when the target is leaving: that is its cue to close.
func (c *Core) tellLeaver(target *peer) {
	if target.leaving && target.link != 0 {
		c.toPeer(target, TakeoverServer{Header: Header{Sender: c.cfg.ID, Receiver: target.id}, Target: target.id})
	}
}

// DefaultLeaveTimeout bounds how long a leaving registrar waits for a
// peer to take its PEs over before it closes anyway.
const DefaultLeaveTimeout = 2 * time.Second

// leave runs the graceful part of the shutdown: new connections are
// refused, peers are told, and the server waits (bounded by LeaveTimeout)
// for one of them to take the PEs over. The caller then closes every
// connection.
func (s *Server) leave() {
	s.stopDials()
	s.asapLn.Close()
	s.enrpLn.Close()
	if s.abrupt.Load() || s.cfg.LeaveTimeout < 0 {
		return
	}
	timeout := s.cfg.LeaveTimeout
	if timeout == 0 {
		timeout = DefaultLeaveTimeout
	}
	start := time.Now()
	s.mu.Lock()
	s.core.SetNow(start)
	s.core.Leave()
	later := s.flushLocked(s.core.Drain())
	done := s.core.HandedOver()
	s.mu.Unlock()
	s.finish(later)
	if !done {
		t := time.NewTimer(timeout)
		select {
		case <-s.handedOver:
		case <-t.C:
			s.log.Warn("leaving: no peer took our PEs over in time; closing, PEs will register elsewhere",
				"timeout", timeout)
		}
		t.Stop()
	}
	// Let the last messages (the leaving Presence at least) reach the
	// wire before the connections close.
	s.flushQueues(start.Add(timeout), 100*time.Millisecond)
	s.log.Info("left the operation scope", "handedOver", s.HandedOver(), "took", time.Since(start))
}

// HandedOver reports whether a graceful leave handed this registrar's PEs
// to a peer.
func (s *Server) HandedOver() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.core.Leaving() && s.core.HandedOver()
}

// noteHandover wakes leave once the core reports its PEs taken over; s.mu
// is held.
func (s *Server) noteHandover() {
	if s.core.Leaving() && s.core.HandedOver() {
		s.handoverOnce.Do(func() { close(s.handedOver) })
	}
}

// flushQueues waits until every connection has written what was queued on
// it, for at most most and not past deadline.
func (s *Server) flushQueues(deadline time.Time, most time.Duration) {
	if d := time.Now().Add(most); d.Before(deadline) {
		deadline = d
	}
	for time.Now().Before(deadline) {
		s.mu.Lock()
		pending := 0
		for _, l := range s.links {
			pending += int(l.unsent.Load())
		}
		s.mu.Unlock()
		if pending == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// SkipLeave makes Run, once its context ends, close without the graceful
// leave, as a crash looks to the peers: their timers find the registrar
// dead. For tests of the takeover of a failed registrar and for chaos
// tooling.
func (s *Server) SkipLeave() { s.abrupt.Store(true) }
