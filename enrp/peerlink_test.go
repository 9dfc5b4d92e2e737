package enrp

import (
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/wire"
)

// enrpLinks counts s's ENRP connections.
func enrpLinks(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.links {
		if l.proto == wire.ENRP {
			n++
		}
	}
	return n
}

// Over SCTP two registrars that name each other as static peers both dial
// from their ENRP ports, so both associations would have the same address
// pair: they must end up with one association between them, and keep it
// (a second one would reset the first, and the peers would flap).
func TestIntegrationOneAssociationBetweenStaticPeers(t *testing.T) {
	if testenv.Transport() != "sctp" {
		t.Skip("over TCP each direction has its own connection; this runs in the test VM (RSPXDP_TEST_TRANSPORT=sctp)")
	}
	nodes := startCluster(t, 2, nil)
	if _, err := eventually(3*time.Second, func() bool {
		return len(nodes[0].srv.Peers()) == 1 && len(nodes[1].srv.Peers()) == 1
	}); err != nil {
		t.Fatal("registrars did not find each other")
	}
	// Several heartbeat cycles, long enough for a redial or a reset
	// association to show.
	deadline := time.Now().Add(10 * itHeartbeat)
	for time.Now().Before(deadline) {
		for i, n := range nodes {
			if got := enrpLinks(n.srv); got != 1 {
				t.Fatalf("registrar %d has %d ENRP associations to its one peer, want 1", i+1, got)
			}
			if len(n.srv.Peers()) != 1 {
				t.Fatalf("registrar %d lost its peer", i+1)
			}
		}
		time.Sleep(itHeartbeat / 4)
	}
}
