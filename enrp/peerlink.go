package enrp

import (
	"context"
	"net/netip"
	"time"

	"github.com/rspxdp/rspxdp/wire"
)

// acceptedFrom returns an ENRP link a peer opened to us from addr, or nil.
//
// Over SCTP our outgoing ENRP associations leave from the ENRP listen port
// (transport.Config.DialFromListener), and so do rsplib's. An association
// between two such endpoints is one and the same whoever opened it: dialling
// a peer that already reached us from its ENRP port would start a second
// association on the same addresses and ports, which the peer takes for a
// restart of the first. So a peer that is already connected is not dialled.
func (s *Server) acceptedFrom(addr string) *link {
	want, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.links {
		if l.proto != wire.ENRP || l.conn.RemoteAddr() == nil {
			continue
		}
		if got, err := netip.ParseAddrPort(l.conn.RemoteAddr().String()); err == nil && got == want {
			return l
		}
	}
	return nil
}

// probeLink treats a link the peer opened like one we dialled: the core
// introduces us on it and keeps probing until the peer is live.
func (s *Server) probeLink(l *link) {
	s.mu.Lock()
	s.core.LinkUp(l.id)
	later := s.flushLocked(s.core.Drain())
	s.mu.Unlock()
	s.finish(later)
}

// awaitPeerDial decides, before we dial the peer at addr, whether to use
// a link the peer opened instead, and returns that link or nil (dial).
//
// Over SCTP two registrars that dial each other at the same time from
// their ENRP ports are no problem: the kernel merges the crossing INITs
// into one association. The trouble is a dial just after the peer's
// association came up but before we accepted it. So only the registrar
// with the lower ENRP address dials at once; the other first waits half a
// heartbeat cycle for the peer's association, and dials only if none came
// (a peer that was never told about us, such as an rsplib registrar
// started without -peer, never dials).
func (s *Server) awaitPeerDial(ctx context.Context, addr string) *link {
	if l := s.acceptedFrom(addr); l != nil || s.enrpT.Name() != "sctp" {
		return l
	}
	peer, err := netip.ParseAddrPort(addr)
	if err != nil || s.cfg.Config.ENRP.Compare(peer) < 0 {
		return nil
	}
	t := time.NewTimer(s.core.cfg.PeerHeartbeatCycle / 2)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil
	case <-t.C:
	}
	return s.acceptedFrom(addr)
}
