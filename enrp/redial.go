package enrp

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/rspxdp/rspxdp/transport"
	"github.com/rspxdp/rspxdp/wire"
)

// Peer connections we open are kept open: static peers (--peer) and peers
// learned from a List Response or a Presence announce alike. When one
// closes, it is redialled with exponential backoff and jitter, from a
// sixteenth of the heartbeat cycle up to half of it, so a peer whose
// connection flapped is heard again well within max-time-last-heard and
// is never taken over for it. A learned peer is given up once a dial fails
// while the core no longer counts it alive (it was taken over or left); a
// static one is redialled for as long as the server runs, which is how a
// restarted registrar is found again.

// peerBackoff returns the first and the longest pause between dials.
func (s *Server) peerBackoff() (first, longest time.Duration) {
	hb := s.core.cfg.PeerHeartbeatCycle
	first, longest = max(hb/16, 10*time.Millisecond), max(hb/2, 10*time.Millisecond)
	return first, longest
}

// keepPeer starts the dial loop for addr unless one runs already. id is
// the peer's server ID when learned (0 for a static peer).
func (s *Server) keepPeer(addr string, id uint32) {
	s.mu.Lock()
	ctx := s.dialCtx
	if ctx == nil || ctx.Err() != nil || s.dialled[addr] {
		s.mu.Unlock()
		return
	}
	s.dialled[addr] = true
	s.mu.Unlock()
	s.wg.Add(1)
	go s.peerLoop(ctx, addr, id)
}

// connectPeer opens and keeps an ENRP connection to a peer learned from a
// List Response or an announce.
func (s *Server) connectPeer(addr netip.AddrPort, id uint32) {
	s.keepPeer(addr.String(), id)
}

// peerAlive reports whether the core counts peer id alive.
func (s *Server) peerAlive(id uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.core.peers[id]
	return p != nil && !p.dead
}

func (s *Server) peerLoop(ctx context.Context, addr string, id uint32) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.dialled, addr)
		s.mu.Unlock()
	}()
	first, longest := s.peerBackoff()
	pause := first
	// A static peer that never answers is a configuration mistake or a
	// down neighbour the operator must hear of: warned once, after
	// max-time-last-heard of failed dials, and shown by StaticPeerStates.
	started, warned := time.Now(), false
	for ctx.Err() == nil {
		var err error
		l := s.awaitPeerDial(ctx, addr) // peerlink.go: over SCTP, never a second association
		if l != nil {
			s.probeLink(l)
		} else {
			dctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
			var c transport.Conn
			c, err = s.enrpT.Dial(dctx, addr)
			cancel()
			if err == nil {
				l = s.addLink(c, wire.ENRP, true, nil, netip.Prefix{})
			}
		}
		if id == 0 {
			s.setStaticPeerUp(addr, l != nil)
		}
		if l != nil && warned {
			s.log.Info("static peer answers now", "addr", addr)
			warned = false
		}
		if l != nil {
			up := time.Now()
			select {
			case <-l.done:
			case <-ctx.Done():
				return
			}
			if id == 0 {
				s.setStaticPeerUp(addr, false)
			}
			started = time.Now() // the next silence is measured afresh
			if time.Since(up) > s.core.cfg.PeerMaxTimeLastHeard {
				pause = first // it was up for a while: a fresh failure
			}
		}
		switch {
		case id == 0 && !s.staticPeer(addr):
			// SetPeers dropped it on a configuration reload.
			s.log.Info("static peer removed from the configuration: not redialled", "addr", addr)
			return
		case l != nil:
			s.log.Info("peer connection closed; redialling", "addr", addr, "in", pause)
		case id != 0 && !s.peerAlive(id):
			s.log.Info("learned peer unreachable and no longer alive: not redialled", "addr", addr, "peer", idString(id))
			return
		case id == 0 && !warned && time.Since(started) >= s.core.cfg.PeerMaxTimeLastHeard:
			s.log.Warn("static peer does not answer; still trying", "addr", addr, "for", time.Since(started).Round(time.Millisecond), "err", err)
			warned = true
		default:
			s.log.Debug("peer dial failed", "addr", addr, "err", err)
		}
		// Jitter of ±25% keeps two registrars that lost each other at the
		// same moment from redialling in lockstep.
		d := pause - pause/4 + rand.N(pause/2+1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		pause = min(2*pause, longest)
	}
}
