package enrp

import (
	"testing"
	"time"
)

// crash stops a registrar as a crash would: no leave, peers' timers decide.
func (n *node) crash() {
	n.srv.SkipLeave()
	n.stop()
}

// pesOwnedBy reports whether every PE's home (as the PE and every server
// see it) is one of owners.
func pesOwnedBy(srvs []*Server, pes []*testClient, owners ...uint32) bool {
	ok := func(id uint32) bool {
		for _, o := range owners {
			if id == o {
				return true
			}
		}
		return false
	}
	for _, p := range pes {
		if !ok(p.homeID()) {
			return false
		}
		for _, s := range srvs {
			s.mu.Lock()
			pe, found := s.core.lookup("echo", p.pe.ID)
			s.mu.Unlock()
			if !found || pe.Home != p.homeID() {
				return false
			}
		}
	}
	return true
}

// TestIntegrationGracefulLeave: 3 registrars with the RFC's default peer
// timers (10 s until a silent peer is taken over) and 20 PEs over TCP on
// loopback. Cancelling one registrar's context hands its PEs to a survivor
// long before those timers could; the figure is logged. The registrar then
// restarts and resynchronises.
func TestIntegrationGracefulLeave(t *testing.T) {
	top := t
	rfcTimers := func(c *ServerConfig) {
		c.PeerHeartbeatCycle, c.PeerMaxTimeLastHeard, c.PeerMaxTimeNoResponse, c.TakeoverExpiry = 0, 0, 0, 0
	}
	nodes := startCluster(t, 3, rfcTimers)
	waitPeers(t, nodes)
	pes := make([]*testClient, 20)
	for i := range pes {
		pes[i] = startPE(t, nodes[i%3].srv.ASAPAddr().String(), "echo", uint32(300+i))
		if r, ok := pes[i].await(t).(RegistrationResponse); !ok || r.Reject {
			t.Fatalf("PE %d registration: %+v", i, r)
		}
	}
	t.Cleanup(func() {
		for _, p := range pes {
			p.kill()
		}
	})
	if _, err := eventually(3*time.Second, func() bool {
		return converged(servers(nodes...), 20) && pesOwnedBy(servers(nodes...), pes, 1, 2, 3)
	}); err != nil {
		t.Fatal("no convergence after registration")
	}
	owned := 0
	for _, p := range pes {
		if p.homeID() == 3 {
			owned++
		}
	}

	start := time.Now()
	stopped := make(chan struct{})
	go func() { nodes[2].stop(); close(stopped) }()
	live := servers(nodes[0], nodes[1])
	// Polled every millisecond (eventually's 5 ms would blur the figure).
	var d time.Duration
	for d = 0; d < 4*time.Second; d = time.Since(start) {
		if converged(live, 20) && live[0].Checksum(3) == 0xffff && live[1].Checksum(3) == 0xffff && pesOwnedBy(live, pes, 1, 2) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if d >= 4*time.Second {
		t.Fatalf("the leaving registrar's PEs were not taken over in %v (peer timers: %v + %v)",
			d, DefaultPeerMaxTimeLastHeard, DefaultPeerMaxTimeNoResponse)
	}
	select {
	case <-stopped:
	case <-time.After(DefaultLeaveTimeout + time.Second):
		t.Fatal("the leaving registrar did not stop")
	}
	ran := time.Since(start)
	if !nodes[2].srv.HandedOver() {
		t.Fatal("the leaving registrar closed without a handover")
	}
	t.Logf("graceful leave: %d PEs of registrar 3 owned by survivors, and known so by the PEs and both survivors, %v after cancel; Run returned after %v (RFC timers would take %v)",
		owned, d, ran, DefaultPeerMaxTimeLastHeard+DefaultPeerMaxTimeNoResponse)
	if n := nodes[0].srv.Counters().Takeovers + nodes[1].srv.Counters().Takeovers; n != 1 {
		t.Errorf("survivors completed %d takeovers, want exactly 1", n)
	}

	cfg := itConfig(3)
	rfcTimers(&cfg)
	cfg.Peers = []string{nodes[0].srv.ENRPAddr().String(), nodes[1].srv.ENRPAddr().String()}
	nodes[2] = startNode(top, cfg)
	if d, err := eventually(3*time.Second, func() bool {
		return converged(servers(nodes...), 20) && len(nodes[2].srv.Peers()) == 2 && len(nodes[0].srv.Peers()) == 2
	}); err != nil {
		t.Fatalf("restarted registrar holds %d PEs, peers %v after %v", nodes[2].srv.Count(), nodes[2].srv.Peers(), d)
	}
}
