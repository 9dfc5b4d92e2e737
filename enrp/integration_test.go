package enrp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/transport"
	"github.com/rspxdp/rspxdp/wire"
)

// Integration tests: real registrars over TCP (or what
// RSPXDP_TEST_TRANSPORT names) on 127.0.0.1 with small timers, stretched by
// RSPXDP_TIME_SCALE, in one process.

var (
	itKA        = testenv.Scaled(100 * time.Millisecond)
	itHeartbeat = testenv.Scaled(100 * time.Millisecond)
	itLastHeard = testenv.Scaled(250 * time.Millisecond)
	itNoResp    = testenv.Scaled(150 * time.Millisecond)
)

type node struct {
	srv    *Server
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func itConfig(id uint32) ServerConfig {
	return ServerConfig{
		Config: Config{
			ID:                    id,
			KeepAliveInterval:     itKA,
			KeepAliveTimeout:      itKA,
			PeerHeartbeatCycle:    itHeartbeat,
			PeerMaxTimeLastHeard:  itLastHeard,
			PeerMaxTimeNoResponse: itNoResp,
			TakeoverExpiry:        testenv.Scaled(300 * time.Millisecond),
			DrainTimeout:          -1,
			Logger:                quietLogger(),
		},
		Transport:  testenv.Transport(),
		ASAPListen: "127.0.0.1:0",
		ENRPListen: "127.0.0.1:0",
	}
}

func startNode(t testing.TB, cfg ServerConfig) *node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := NewServer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{srv: srv, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- srv.Run(ctx) }()
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	n.once.Do(func() {
		n.cancel()
		select {
		case <-n.done:
		case <-time.After(5 * time.Second):
			panic("registrar did not stop")
		}
	})
}

// startCluster starts k registrars, each with the others as static peers.
func startCluster(t testing.TB, k int, tune func(*ServerConfig)) []*node {
	t.Helper()
	cfgs := make([]ServerConfig, k)
	srvs := make([]*Server, k)
	for i := range cfgs {
		cfgs[i] = itConfig(uint32(i + 1))
		if tune != nil {
			tune(&cfgs[i])
		}
	}
	// Bind first so every registrar knows the others' addresses.
	for i := range cfgs {
		s, err := NewServer(context.Background(), cfgs[i])
		if err != nil {
			t.Fatal(err)
		}
		srvs[i] = s
	}
	nodes := make([]*node, k)
	for i, s := range srvs {
		for j, o := range srvs {
			if i != j {
				s.cfg.Peers = append(s.cfg.Peers, o.ENRPAddr().String())
			}
		}
		if i > 0 {
			s.core.synced = false
		}
		ctx, cancel := context.WithCancel(context.Background())
		n := &node{srv: s, cancel: cancel, done: make(chan error, 1)}
		go func() { n.done <- s.Run(ctx) }()
		t.Cleanup(n.stop)
		nodes[i] = n
	}
	return nodes
}

// converged reports whether all servers hold want PEs with equal per-owner
// checksums.
func converged(srvs []*Server, want int) bool {
	for _, s := range srvs {
		if s.Count() != want {
			return false
		}
	}
	for _, s := range srvs[1:] {
		for _, o := range srvs {
			if s.Checksum(o.ID()) != srvs[0].Checksum(o.ID()) {
				return false
			}
		}
	}
	return true
}

func servers(ns ...*node) []*Server {
	var out []*Server
	for _, n := range ns {
		out = append(out, n.srv)
	}
	return out
}

func TestIntegrationThreeRegistrarsTwentyPEs(t *testing.T) {
	top := t
	nodes := startCluster(t, 3, nil)
	if _, err := eventually(3*time.Second, func() bool {
		for _, n := range nodes {
			if len(n.srv.Peers()) != 2 {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatal("registrars did not find each other")
	}
	pes := make([]*testClient, 20)
	for i := range pes {
		pes[i] = startPE(t, nodes[i%3].srv.ASAPAddr().String(), "echo", uint32(100+i))
		if r, ok := pes[i].await(t).(RegistrationResponse); !ok || r.Reject {
			t.Fatalf("PE %d registration: %+v", i, r)
		}
	}
	t.Cleanup(func() {
		for _, p := range pes {
			p.kill()
		}
	})
	if d, err := eventually(2*time.Second, func() bool { return converged(servers(nodes...), 20) }); err != nil {
		t.Fatalf("no convergence after registration (%v)", d)
	}

	t.Run("resolution", func(t *testing.T) {
		r := dialRPC(t, nodes[1].srv.ASAPAddr().String())
		defer r.conn.Close()
		resp, err := r.call(context.Background(), HandleResolution{Handle: "echo"})
		if err != nil {
			t.Fatal(err)
		}
		if hr := resp.(HandleResolutionResponse); len(hr.PEs) != 3 || hr.Cause != 0 {
			t.Fatalf("resolution: %+v", hr)
		}
	})

	t.Run("kill registrar: takeover", func(t *testing.T) {
		nodes[2].crash()
		start := time.Now()
		live := servers(nodes[0], nodes[1])
		d, err := eventually(3*time.Second, func() bool {
			if !converged(live, 20) {
				return false
			}
			for _, s := range live {
				if s.Checksum(3) != 0xffff || len(s.Peers()) != 1 {
					return false
				}
			}
			return true
		})
		if err != nil {
			t.Fatalf("PEs of the dead registrar not taken over after %v: counts %d/%d", d, live[0].Count(), live[1].Count())
		}
		// Every PE now answers a live registrar that agrees it is home.
		if _, err := eventually(2*time.Second, func() bool {
			for _, p := range pes {
				if h := p.homeID(); h != 1 && h != 2 {
					return false
				}
			}
			return true
		}); err != nil {
			t.Fatal("PEs were not told their new home")
		}
		detect := itLastHeard + itNoResp
		t.Logf("takeover: all PEs owned by live registrars, checksums equal, %v after kill (detection %v + heartbeat %v)",
			time.Since(start), detect, itHeartbeat)
		if d > detect+2*itHeartbeat+500*time.Millisecond { // + takeover expiry and load margin
			t.Errorf("agreement took %v, more than detection + takeover expiry + 2 heartbeat cycles", d)
		}
	})

	t.Run("restart registrar: mentor sync", func(t *testing.T) {
		cfg := itConfig(3)
		cfg.Peers = []string{nodes[0].srv.ENRPAddr().String(), nodes[1].srv.ENRPAddr().String()}
		nodes[2] = startNode(top, cfg) // lives past this subtest
		if d, err := eventually(3*time.Second, func() bool { return converged(servers(nodes...), 20) }); err != nil {
			t.Fatalf("restarted registrar holds %d PEs after %v", nodes[2].srv.Count(), d)
		}
	})

	t.Run("kill PEs: removed everywhere within interval+timeout", func(t *testing.T) {
		start := time.Now()
		for _, p := range pes[:5] {
			p.kill()
		}
		d, err := eventually(3*time.Second, func() bool { return converged(servers(nodes...), 15) })
		if err != nil {
			for _, n := range nodes {
				t.Logf("registrar %d: %d PEs, peers %v, snapshot %v", n.srv.ID(), n.srv.Count(), n.srv.Peers(), n.srv.Snapshot())
			}
			t.Fatalf("dead PEs still present after %v", d)
		}
		t.Logf("5 dead PEs removed at all 3 registrars %v after their death", time.Since(start))
		if d > 2*itKA+400*time.Millisecond { // margin for a loaded CI machine
			t.Errorf("removal took %v, want about interval + timeout (%v)", d, 2*itKA)
		}
	})
}

func TestIntegrationRejectedRegistrationOverTCP(t *testing.T) {
	cfg := itConfig(1)
	cfg.Allow = &AllowList{Handles: []string{"allowed"}}
	n := startNode(t, cfg)
	p := startPE(t, n.srv.ASAPAddr().String(), "forbidden", 5)
	defer p.kill()
	r, ok := p.await(t).(RegistrationResponse)
	if !ok || !r.Reject || r.Cause != CauseRejectionDueToSecurity {
		t.Fatalf("response %+v, want reject with cause 0xa", r)
	}
	if n.srv.Count() != 0 {
		t.Fatal("rejected PE in the handlespace")
	}
}

func TestStressTenThousandPEs(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test skipped in -short mode")
	}
	nodes := startCluster(t, 3, func(c *ServerConfig) {
		// The test is about registration load and replication, not
		// liveness: its clients do not answer keep-alives.
		c.KeepAliveInterval = time.Minute
		c.KeepAliveTimeout = time.Minute
	})
	if _, err := eventually(3*time.Second, func() bool {
		for _, n := range nodes {
			if len(n.srv.Peers()) != 2 {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatal("registrars did not find each other")
	}
	total, conns := 10000, 30
	if raceEnabled {
		total = 2000
	}
	start := time.Now()
	errs := make(chan error, conns)
	for c := 0; c < conns; c++ {
		go func(c int) {
			r := dialRPC(t, nodes[c%3].srv.ASAPAddr().String())
			// Kept open to the end: a closed link would make the
			// registrars dial the (unreachable) test PE addresses.
			t.Cleanup(func() { r.conn.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for i := c; i < total; i += conns {
				pe := testPE(uint32(i + 1))
				resp, err := r.call(ctx, Registration{Handle: fmt.Sprintf("pool-%d", i%100), PE: pe})
				if err != nil {
					errs <- err
					return
				}
				if rr := resp.(RegistrationResponse); rr.Reject {
					errs <- fmt.Errorf("PE %d rejected: %v", i, rr.Cause)
					return
				}
			}
			errs <- nil
		}(c)
	}
	for c := 0; c < conns; c++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	regDone := time.Since(start)
	d, err := eventually(20*time.Second, func() bool { return converged(servers(nodes...), total) })
	if err != nil {
		t.Fatalf("no convergence: counts %d/%d/%d", nodes[0].srv.Count(), nodes[1].srv.Count(), nodes[2].srv.Count())
	}
	t.Logf("%d PEs registered in %v (%.0f/s), all 3 registrars converged %v later", total, regDone,
		float64(total)/regDone.Seconds(), d)
}

// senderOf returns the ENRP sender of m, 0 for ASAP messages.
func senderOf(m Message) uint32 {
	switch m := m.(type) {
	case Presence:
		return m.Sender
	case HandleTableRequest:
		return m.Sender
	case HandleTableResponse:
		return m.Sender
	case HandleUpdate:
		return m.Sender
	case ListRequest:
		return m.Sender
	case ListResponse:
		return m.Sender
	case InitTakeover:
		return m.Sender
	case InitTakeoverAck:
		return m.Sender
	case TakeoverServer:
		return m.Sender
	}
	return 0
}

func TestIntegrationPartitionHeal(t *testing.T) {
	var cut atomic.Bool
	side := func(id uint32) int {
		if id == 3 {
			return 1
		}
		return 0
	}
	nodes := startCluster(t, 3, func(c *ServerConfig) {
		me := c.ID
		c.drop = func(m Message) bool {
			from := senderOf(m)
			return cut.Load() && from != 0 && side(from) != side(me)
		}
	})
	waitPeers(t, nodes)
	pes := make([]*testClient, 12)
	for i := range pes {
		pes[i] = startPE(t, nodes[i%3].srv.ASAPAddr().String(), "echo", uint32(200+i))
		pes[i].await(t)
	}
	t.Cleanup(func() {
		for _, p := range pes {
			p.kill()
		}
	})
	if _, err := eventually(2*time.Second, func() bool { return converged(servers(nodes...), 12) }); err != nil {
		t.Fatal("no convergence before the partition")
	}
	cut.Store(true)
	if _, err := eventually(3*time.Second, func() bool {
		return len(nodes[2].srv.Peers()) == 0 && len(nodes[0].srv.Peers()) == 1 && len(nodes[1].srv.Peers()) == 1
	}); err != nil {
		t.Fatal("the partition was not detected")
	}
	time.Sleep(500 * time.Millisecond) // let both sides' takeovers settle
	cut.Store(false)
	d, err := eventually(5*time.Second, func() bool {
		if !converged(servers(nodes...), 12) {
			return false
		}
		for _, n := range nodes {
			if len(n.srv.Peers()) != 2 {
				return false
			}
		}
		// Every PE's actual home agrees with the handlespace everywhere.
		for _, p := range pes {
			for _, n := range nodes {
				n.srv.mu.Lock()
				pe, ok := n.srv.core.lookup("echo", p.pe.ID)
				n.srv.mu.Unlock()
				if !ok || pe.Home != p.homeID() {
					return false
				}
			}
		}
		return true
	})
	if err != nil {
		for _, n := range nodes {
			t.Logf("registrar %d: %d PEs, peers %v", n.srv.ID(), n.srv.Count(), n.srv.Peers())
		}
		t.Fatalf("no convergence %v after healing", d)
	}
	t.Logf("converged %v after healing", d)
}

func TestIntegrationServerAnnounce(t *testing.T) {
	rx, err := transport.ListenAnnounces(transport.AnnounceReceiverConfig{
		Addr: netip.MustParseAddrPort("127.0.0.1:0"), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	cfg := itConfig(0x77)
	cfg.Announce = true
	cfg.AnnounceInterval = 50 * time.Millisecond
	cfg.AnnounceUnicast = []netip.AddrPort{netip.MustParseAddrPort(rx.LocalAddr().String())}
	n := startNode(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	b, _, err := rx.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(wire.ASAP, b)
	if err != nil {
		t.Fatal(err)
	}
	sa, ok := m.(ServerAnnounce)
	want := netip.MustParseAddrPort(n.srv.ASAPAddr().String())
	if !ok || sa.ServerID != 0x77 || len(sa.ASAP) != 1 || sa.ASAP[0] != want {
		t.Fatalf("announce %#v, want server 0x77 at %v", m, want)
	}
}

// freeUDPPort returns a loopback UDP address that was free a moment ago.
func freeUDPPort(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestIntegrationPeerDiscoveryByAnnounce(t *testing.T) {
	rx := []netip.AddrPort{freeUDPPort(t), freeUDPPort(t)}
	var nodes []*node
	for i := 0; i < 2; i++ {
		cfg := itConfig(uint32(i + 1))
		cfg.PeerAnnounce = true
		cfg.PeerAnnounceListen = rx[i].String()
		cfg.PeerAnnounceUnicast = []netip.AddrPort{rx[1-i]}
		nodes = append(nodes, startNode(t, cfg))
	}
	if _, err := eventually(3*time.Second, func() bool {
		return len(nodes[0].srv.Peers()) == 1 && len(nodes[1].srv.Peers()) == 1
	}); err != nil {
		t.Fatal("registrars without static peers did not find each other by announces")
	}
	p := startPE(t, nodes[0].srv.ASAPAddr().String(), "echo", 1)
	defer p.kill()
	p.await(t)
	if _, err := eventually(2*time.Second, func() bool { return converged(servers(nodes...), 1) }); err != nil {
		t.Fatal("registration not replicated to the discovered peer")
	}
}

func TestIntegrationPeersLearnedFromMentorList(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	waitPeers(t, nodes)
	cfg := itConfig(3)
	cfg.Peers = []string{nodes[1].srv.ENRPAddr().String()} // knows only 2
	n3 := startNode(t, cfg)
	if _, err := eventually(3*time.Second, func() bool {
		return len(n3.srv.Peers()) == 2 && len(nodes[0].srv.Peers()) == 2
	}); err != nil {
		t.Fatalf("registrar 3 peers %v, registrar 1 peers %v: the mentor's list was not followed",
			n3.srv.Peers(), nodes[0].srv.Peers())
	}
}

// TestIntegrationBareRegistrationReachesPeerWithASAPAddress: a PE that
// registers without an ASAP transport (as rsplib's rspserver does) is
// replicated to the peer registrar with the address of its association and
// the registrar's transport, which rsplib requires in every Pool Element.
func TestIntegrationBareRegistrationReachesPeerWithASAPAddress(t *testing.T) {
	ns := startCluster(t, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := newTCP(t).Dial(ctx, ns[0].srv.ASAPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pe := testPE(0x77)
	pe.ASAP, pe.ASAPProtocol = netip.AddrPort{}, 0
	b, err := Encode(Registration{Handle: "bare", PE: pe})
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.WriteMessage(ctx, b); err != nil {
		t.Fatal(err)
	}
	want := netip.MustParseAddrPort(conn.LocalAddr().String())
	for ctx.Err() == nil {
		for _, p := range ns[1].srv.Snapshot() {
			for _, got := range p.PEs {
				if got.ID != pe.ID {
					continue
				}
				if got.ASAP != want || got.ASAPProtocol != protocolOfTransport(ns[0].srv.asapT) {
					t.Fatalf("peer holds the PE with ASAP %v/%d, want %v over %s", got.ASAP, got.ASAPProtocol, want, ns[0].srv.asapT.Name())
				}
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the PE did not reach the peer registrar")
}
