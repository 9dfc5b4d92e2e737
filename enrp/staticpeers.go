package enrp

import (
	"errors"
	"slices"
)

// SetPeers replaces the static peers, for a configuration reload: a new
// peer is dialled at once; a removed one is no longer redialled once its
// connection closes (an established association stays until then, and the
// peer ages out as any other). Peers learned over ENRP are not affected.
func (s *Server) SetPeers(peers []string) {
	s.mu.Lock()
	old := s.cfg.Peers
	s.cfg.Peers = slices.Clone(peers)
	s.mu.Unlock()
	for _, p := range peers {
		if !slices.Contains(old, p) {
			s.keepPeer(p, 0)
		}
	}
}

// StaticPeers returns the configured static peers.
func (s *Server) StaticPeers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.cfg.Peers)
}

// StaticPeerStates reports, for each configured static peer, whether its
// last connection attempt succeeded (true while connected). A peer not yet
// tried is false.
func (s *Server) StaticPeerStates() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]bool, len(s.cfg.Peers))
	for _, p := range s.cfg.Peers {
		out[p] = s.staticUp[p]
	}
	return out
}

func (s *Server) setStaticPeerUp(addr string, up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.staticUp == nil {
		s.staticUp = map[string]bool{}
	}
	s.staticUp[addr] = up
}

// staticPeer reports whether addr is (still) a configured static peer.
func (s *Server) staticPeer(addr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.cfg.Peers, addr)
}

// Close releases what NewServer opened (listeners, announce sockets) for a
// server that will not Run: the caller's start failed after NewServer
// succeeded, and nothing may stay listening. A server that ran closes
// everything itself when Run returns; Close must not be called then.
func (s *Server) Close() error {
	err := errors.Join(s.asapLn.Close(), s.enrpLn.Close())
	if s.announcer != nil {
		err = errors.Join(err, s.announcer.Close())
	}
	if s.peerAnnouncer != nil {
		err = errors.Join(err, s.peerAnnouncer.Close())
	}
	if s.peerRx != nil {
		err = errors.Join(err, s.peerRx.Close())
	}
	return err
}
