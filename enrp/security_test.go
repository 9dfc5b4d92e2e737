package enrp

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/security"
	"github.com/rspxdp/rspxdp/security/securitytest"
	"github.com/rspxdp/rspxdp/transport"
	"github.com/rspxdp/rspxdp/wire"
)

// End-to-end tests of the registrar with Security: real TLS 1.3 with
// mutual authentication on loopback, a policy file, certificates from a
// test CA. Each is named after the RFC 5355 section of the threat.

// secureNode starts a registrar with Security; tune may adjust it.
func secureNode(t *testing.T, p *securitytest.PKI, tune func(*Security)) *node {
	t.Helper()
	sec := &Security{TLS: p.Reloader(t, security.RoleRegistrar, "r1"), Policy: p.PolicyFile(t)}
	if tune != nil {
		tune(sec)
	}
	cfg := itConfig(1)
	cfg.Transport = "tcp" // TLS runs over TCP, also where the other tests run over SCTP
	cfg.ASAPListen, cfg.ENRPListen = "127.0.0.1:0", "127.0.0.1:0"
	// Keep-alives out of the way: the test clients do not answer them.
	cfg.KeepAliveInterval, cfg.KeepAliveTimeout = time.Minute, time.Minute
	cfg.Security = sec
	return startNode(t, cfg)
}

// tlsClient dials addr as role/name, trusting only registrar identities.
func tlsClient(t *testing.T, p *securitytest.PKI, role security.Role, name string, proto transport.Protocol, addr string) (*rpc, error) {
	t.Helper()
	c, err := p.Reloader(t, role, name).ClientConfig(security.ClientOptions{TrustedServers: []string{DefaultTrustedPeers}})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := transport.NewTLS(transport.Config{Protocol: proto, Logger: quietLogger()}, c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := tr.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	return &rpc{conn: conn}, nil
}

func mustTLSClient(t *testing.T, p *securitytest.PKI, role security.Role, name, addr string) *rpc {
	t.Helper()
	r, err := tlsClient(t, p, role, name, transport.ASAP, addr)
	if err != nil {
		t.Fatalf("dial as %s/%s: %v", role, name, err)
	}
	return r
}

func callT(t *testing.T, r *rpc, m Message) Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := r.call(ctx, m)
	if err != nil {
		t.Fatalf("%s: %v", msgName(m), err)
	}
	return resp
}

// TestRFC5355_3_1_MasqueradingPE and the ownership threats of 3.2 and
// 3.3: a PE may register only the handles its identity is granted, and
// only the identity that registered a PE identifier may re-register
// (replay included) or deregister it.
func TestRFC5355_Section3_MasqueradingPEAndSpoofedDeregistration(t *testing.T) {
	p := securitytest.New(t)
	n := secureNode(t, p, nil)
	addr := n.srv.ASAPAddr().String()
	alice := mustTLSClient(t, p, security.RolePE, "alice", addr)
	mallory := mustTLSClient(t, p, security.RolePE, "mallory", addr)
	pu := mustTLSClient(t, p, security.RolePU, "client", addr)

	pe := testPE(1)
	aliceReg, err := Encode(Registration{Handle: "echo", PE: pe})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name   string
		who    *rpc
		msg    Message
		raw    []byte // sent as is instead of msg (a captured message)
		reject bool
		count  int // PEs in the handlespace afterwards
	}{
		{"handle the identity may not register", alice, Registration{Handle: "other", PE: testPE(2)}, nil, true, 0},
		{"a PU may not register at all", pu, Registration{Handle: "echo", PE: testPE(3)}, nil, true, 0},
		{"owner registers", alice, nil, aliceReg, false, 1},
		{"another identity takes the PE id", mallory, Registration{Handle: "echo", PE: pe}, nil, true, 1},
		{"replay of the owner's captured registration", mallory, nil, aliceReg, true, 1},
		{"spoofed deregistration", mallory, Deregistration{Handle: "echo", PEID: 1}, nil, true, 1},
		{"owner re-registers", alice, Registration{Handle: "echo", PE: pe}, nil, false, 1},
		{"owner deregisters", alice, Deregistration{Handle: "echo", PEID: 1}, nil, false, 0},
	}
	for _, s := range steps {
		var resp Message
		if s.raw != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := s.who.conn.WriteMessage(ctx, s.raw); err != nil {
				t.Fatal(err)
			}
			b, err := s.who.conn.ReadMessage(ctx)
			cancel()
			if err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if resp, err = Decode(wire.ASAP, b); err != nil {
				t.Fatal(err)
			}
		} else {
			resp = callT(t, s.who, s.msg)
		}
		var reject bool
		var cause Cause
		switch r := resp.(type) {
		case RegistrationResponse:
			reject, cause = r.Reject, r.Cause
		case DeregistrationResponse:
			reject, cause = r.Reject, r.Cause
		default:
			t.Fatalf("%s: answer %#v", s.name, resp)
		}
		if reject != s.reject || (s.reject && cause != CauseRejectionDueToSecurity) {
			t.Errorf("%s: reject %v cause %v, want reject %v with cause 0xa", s.name, reject, cause, s.reject)
		}
		if got := n.srv.Count(); got != s.count {
			t.Errorf("%s: %d PEs registered, want %d", s.name, got, s.count)
		}
	}
}

// TestRFC5355_Section3_MasqueradingRegistrar: a PU or PE accepts only a
// registrar identity from the CA, and a registrar accepts ENRP only from
// identities the policy lets peer.
func TestRFC5355_Section3_MasqueradingRegistrar(t *testing.T) {
	p := securitytest.New(t)
	n := secureNode(t, p, nil)

	// A server holding a valid PE certificate from the same CA.
	fake := p.Reloader(t, security.RolePE, "fake-registrar")
	tr, err := transport.NewTLS(transport.Config{Protocol: transport.ASAP, Logger: quietLogger()}, fake.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tr.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() { _, _ = c.ReadMessage(context.Background()); c.Close() }()
		}
	}()
	if _, err := tlsClient(t, p, security.RolePU, "client", transport.ASAP, ln.Addr().String()); err == nil {
		t.Fatal("PU accepted a registrar presenting a PE certificate")
	}
	// The real registrar is accepted.
	mustTLSClient(t, p, security.RolePU, "client", n.srv.ASAPAddr().String())

	// A PE certificate on the ENRP port: its Presence is not taken, and
	// the association is closed.
	r, err := tlsClient(t, p, security.RolePE, "alice", transport.ENRP, n.srv.ENRPAddr().String())
	if err != nil {
		t.Fatalf("TLS to the ENRP port: %v", err)
	}
	b, err := Encode(Presence{Header: Header{Sender: 99}, Info: ServerInfo{ID: 99}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.conn.WriteMessage(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := r.conn.ReadMessage(ctx); err == nil {
		t.Fatal("registrar answered ENRP from an identity that may not peer")
	}
	if peers := n.srv.Peers(); len(peers) != 0 {
		t.Fatalf("peer added from a PE certificate: %v", peers)
	}

	// Without a client certificate there is no association at all.
	plain := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: fake.Roots()}
	tr2, err := transport.NewTLS(transport.Config{Protocol: transport.ASAP, Logger: quietLogger()}, plain)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := tr2.Dial(ctx, n.srv.ASAPAddr().String()); err == nil {
		werr := c.WriteMessage(ctx, b)
		_, rerr := c.ReadMessage(ctx)
		c.Close()
		if werr == nil && rerr == nil {
			t.Fatal("registrar served a client without a certificate")
		}
	}
}

// TestRFC5355_Section3_FloodingResolutions: a flooding PU gets at most its
// burst plus its rate; another PU is still answered at once.
func TestRFC5355_Section3_FloodingResolutions(t *testing.T) {
	p := securitytest.New(t)
	n := secureNode(t, p, func(s *Security) { s.Resolutions = security.RateConfig{Rate: 5, Burst: 10} })
	addr := n.srv.ASAPAddr().String()
	callT(t, mustTLSClient(t, p, security.RolePE, "alice", addr), Registration{Handle: "echo", PE: testPE(1)})

	flooder := mustTLSClient(t, p, security.RolePU, "flooder", addr)
	req, err := Encode(HandleResolution{Handle: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const sent = 200
	start := time.Now()
	for range sent {
		if err := flooder.conn.WriteMessage(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	// Count answers until the line stays quiet for 300 ms.
	answered := 0
	for {
		rctx, rcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err := flooder.conn.ReadMessage(rctx)
		rcancel()
		if err != nil {
			break
		}
		answered++
	}
	limit := 10 + int(5*time.Since(start).Seconds()) + 1
	if answered == 0 || answered > limit {
		t.Fatalf("flooder got %d of %d answers, want 1..%d", answered, sent, limit)
	}
	t.Logf("flooder: %d of %d resolutions answered", answered, sent)
	honest := mustTLSClient(t, p, security.RolePU, "honest", addr)
	if r, ok := callT(t, honest, HandleResolution{Handle: "echo"}).(HandleResolutionResponse); !ok || len(r.PEs) != 1 {
		t.Fatalf("honest PU: %#v", r)
	}
	// Policy: a PU may resolve only what it is granted.
	if r, ok := callT(t, honest, HandleResolution{Handle: "secret"}).(HandleResolutionResponse); !ok || r.Cause != CauseRejectionDueToSecurity {
		t.Fatalf("resolution of a handle the PU may not resolve: %#v", r)
	}
}

// TestRFC5355_Section3_LyingUnreachableReports: one identity reporting a
// healthy PE over and over does not remove it; three distinct ones do.
func TestRFC5355_Section3_LyingUnreachableReports(t *testing.T) {
	p := securitytest.New(t)
	n := secureNode(t, p, nil)
	addr := n.srv.ASAPAddr().String()
	callT(t, mustTLSClient(t, p, security.RolePE, "alice", addr), Registration{Handle: "echo", PE: testPE(1)})
	report := func(r *rpc, times int) {
		b, err := Encode(EndpointUnreachable{Handle: "echo", PEID: 1})
		if err != nil {
			t.Fatal(err)
		}
		for range times {
			if err := r.conn.WriteMessage(context.Background(), b); err != nil {
				t.Fatal(err)
			}
		}
		// A resolution after the reports on the same association is
		// answered only once they were processed.
		callT(t, r, HandleResolution{Handle: "echo"})
	}
	liar := mustTLSClient(t, p, security.RolePU, "liar", addr)
	report(liar, 100)
	if n.srv.Count() != 1 {
		t.Fatal("one reporter removed a PE")
	}
	report(mustTLSClient(t, p, security.RolePU, "second", addr), 1)
	if n.srv.Count() != 1 {
		t.Fatal("two reporters removed a PE (want three)")
	}
	report(mustTLSClient(t, p, security.RolePU, "third", addr), 1)
	if _, err := eventually(2*time.Second, func() bool { return n.srv.Count() == 0 }); err != nil {
		t.Fatal("three distinct reporters did not remove the PE")
	}
}

// TestSecurityNeedsPolicy: TLS without a policy is refused at start.
func TestSecurityNeedsPolicy(t *testing.T) {
	p := securitytest.New(t)
	cfg := itConfig(1)
	cfg.ASAPListen, cfg.ENRPListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Security = &Security{TLS: p.Reloader(t, security.RoleRegistrar, "r1")}
	if s, err := NewServer(context.Background(), cfg); err == nil {
		s.asapLn.Close()
		s.enrpLn.Close()
		t.Fatal("registrar started with TLS and no policy")
	}
}
