package enrp

import (
	"net/netip"

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
