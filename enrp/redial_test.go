package enrp

import (
	"testing"
	"time"
)

// linksTo returns the open ENRP links s has to peer id.
func linksTo(s *Server, id uint32) []*link {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ls []*link
	for lid, pid := range s.core.links {
		l := s.links[lid]
		if l == nil || pid != id {
			continue
		}
		select {
		case <-l.done: // closed, not yet dropped
		default:
			ls = append(ls, l)
		}
	}
	return ls
}

// TestIntegrationLearnedPeersRedialled: registrars 2 and 3 know only 1
// statically and learn each other from its List Response. Their
// connections are cut (all of them, at 2's end) and come back by redial,
// well before the peer timers run out, so nobody takes anybody over.
func TestIntegrationLearnedPeersRedialled(t *testing.T) {
	a := startNode(t, itConfig(1))
	mk := func(id uint32) *node {
		cfg := itConfig(id)
		cfg.Peers = []string{a.srv.ENRPAddr().String()}
		return startNode(t, cfg)
	}
	b := mk(2)
	if _, err := eventually(3*time.Second, func() bool { return len(b.srv.Peers()) == 1 }); err != nil {
		t.Fatal("2 did not join 1")
	}
	c := mk(3)
	all := []*node{a, b, c}
	waitPeers(t, all)
	if len(linksTo(b.srv, 3)) == 0 || len(linksTo(c.srv, 2)) == 0 {
		t.Fatal("2 and 3 are not connected to each other")
	}
	detect := itLastHeard + itNoResp
	for _, tc := range []struct {
		name     string
		from, to *node
	}{
		{"learned peer", b, c},
		{"static peer", b, a},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cut := time.Now()
			for _, l := range linksTo(tc.from.srv, tc.to.srv.ID()) {
				l.close()
			}
			d, err := eventually(detect, func() bool {
				return len(linksTo(tc.from.srv, tc.to.srv.ID())) > 0 && len(linksTo(tc.to.srv, tc.from.srv.ID())) > 0
			})
			if err != nil {
				t.Fatalf("no connection between %d and %d %v after the cut", tc.from.srv.ID(), tc.to.srv.ID(), d)
			}
			t.Logf("%s reconnected %v after the cut (peer timers %v)", tc.name, d, detect)
			// Stay past the detection time: nobody is taken over.
			time.Sleep(time.Until(cut.Add(2 * detect)))
			for _, n := range all {
				if got := n.srv.Peers(); len(got) != 2 {
					t.Fatalf("registrar %d peers %v after the flap", n.srv.ID(), got)
				}
				if k := n.srv.Counters().Takeovers; k != 0 {
					t.Fatalf("registrar %d took a live peer over (%d takeovers)", n.srv.ID(), k)
				}
			}
		})
	}
}
