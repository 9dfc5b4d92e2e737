package security

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/transport"
	"github.com/rspxdp/rspxdp/wire"
	"github.com/rspxdp/rspxdp/wire/wiretest"
)

// quiet drops the transport's logs of refused handshakes: the refusals
// are what the tests expect.
var quiet = slog.New(slog.DiscardHandler)

const testHandle = "secret-pool-handle-7f3a"

func registration(t testing.TB) []byte {
	t.Helper()
	m := &wire.Message{Protocol: wire.ASAP, Type: wire.ASAPRegistration, Params: []wire.Param{
		wire.PoolHandleParam([]byte(testHandle)),
		wire.PoolElementParam(wiretest.PE(0x1234, wiretest.Policy(wire.PolicyRoundRobin), wire.ParamTCPTransport)),
	}}
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tlsPair is a TLS listener made with a server config; dial connects a
// client config to it (optionally through another address).
type tlsPair struct {
	ln transport.Listener
}

func listenTLS(t *testing.T, ctx context.Context, cfg *tls.Config) *tlsPair {
	t.Helper()
	tr, err := transport.NewTLS(transport.Config{Logger: quiet, Protocol: transport.ASAP, HandshakeTimeout: 5 * time.Second}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tr.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &tlsPair{ln: ln}
}

func dialTLS(ctx context.Context, cfg *tls.Config, addr string) (transport.Conn, error) {
	tr, err := transport.NewTLS(transport.Config{Logger: quiet, Protocol: transport.ASAP}, cfg)
	if err != nil {
		return nil, err
	}
	return tr.Dial(ctx, addr)
}

// accept returns the next accepted connection, with its first message
// read (which completes the server side of the handshake).
type accepted struct {
	conn transport.Conn
	msg  []byte
	err  error
}

func (p *tlsPair) acceptOne(ctx context.Context) <-chan accepted {
	ch := make(chan accepted, 1)
	go func() {
		c, err := p.ln.Accept(ctx)
		if err != nil {
			ch <- accepted{err: err}
			return
		}
		m, err := c.ReadMessage(ctx)
		ch <- accepted{conn: c, msg: append([]byte(nil), m...), err: err}
	}()
	return ch
}

func TestMutualTLSHandshake(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pki := newTestPKI(t, "test CA")
	other := newTestPKI(t, "rogue CA")
	srv := mustReloader(t, pki.issue(RoleRegistrar, "reg1"))
	good := mustReloader(t, pki.issue(RolePE, "echo-1"))
	rogue := mustReloader(t, Files{CA: pki.issue(RolePE, "x").CA, Cert: other.issue(RolePE, "echo-1").Cert, Key: other.issue(RolePE, "echo-1").Key})
	rogueSrv := mustReloader(t, other.issue(RoleRegistrar, "reg1"))

	goodCfg, err := good.ClientConfig(ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rogueCfg, err := rogue.ClientConfig(ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	noCert := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: srv.Roots()}

	for _, tc := range []struct {
		name     string
		server   *tls.Config
		client   *tls.Config
		wantID   Identity // nil: the exchange must fail
		clientOK bool     // Dial itself succeeds (TLS 1.3 clients finish before the server checks them)
	}{
		{"valid client certificate", srv.ServerConfig(), goodCfg, Identity{"rspxdp://pe/echo-1", "echo-1"}, true},
		{"client without certificate", srv.ServerConfig(), noCert, nil, true},
		{"client certificate from another CA", srv.ServerConfig(), rogueCfg, nil, true},
		{"server certificate from another CA", rogueSrv.ServerConfig(), goodCfg, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := listenTLS(t, ctx, tc.server)
			got := p.acceptOne(ctx)
			c, err := dialTLS(ctx, tc.client, p.ln.Addr().String())
			if !tc.clientOK {
				if err == nil {
					c.Close()
					t.Fatal("dial to a server with a certificate from another CA succeeded")
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			// The client's view of the server is the registrar.
			if id := CertIdentity(c.Peer().Leaf()); !id.Matches("rspxdp://registrar/reg1") {
				t.Errorf("client sees server identity %v", id)
			}
			werr := c.WriteMessage(ctx, registration(t))
			a := <-got
			if tc.wantID == nil {
				if a.err == nil {
					t.Fatalf("server read a message from an unauthenticated client (write err %v)", werr)
				}
				if a.conn != nil && a.conn.Peer().Authenticated() {
					t.Errorf("refused client has an authenticated identity")
				}
				// The client learns it was refused on its next read.
				if _, err := c.ReadMessage(ctx); err == nil {
					t.Error("client read succeeded after the server refused it")
				}
				return
			}
			if werr != nil || a.err != nil {
				t.Fatalf("write %v, server read %v", werr, a.err)
			}
			defer a.conn.Close()
			if !bytes.Equal(a.msg, registration(t)) {
				t.Error("server read a different message")
			}
			id := CertIdentity(a.conn.Peer().Leaf())
			if len(id) != len(tc.wantID) || id.String() != tc.wantID.String() {
				t.Errorf("identity %v, want %v", id, tc.wantID)
			}
		})
	}
}

func TestPeerIdentityFromConnectionState(t *testing.T) {
	pki := newTestPKI(t, "CA")
	r := mustReloader(t, pki.issue(RolePU, "client-7"))
	leaf := r.Leaf()
	for _, tc := range []struct {
		name string
		cs   tls.ConnectionState
		want string
	}{
		{"no chain", tls.ConnectionState{}, "<unauthenticated>"},
		{"unverified certificates only", tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}, "<unauthenticated>"},
		{"verified chain", tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}, "rspxdp://pu/client-7,client-7"},
	} {
		if got := PeerIdentity(tc.cs).String(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestReloadKeepsSessions rotates the server's certificate while a
// session is open: new handshakes get the new certificate, the old
// session keeps working in both directions.
func TestReloadKeepsSessions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pki := newTestPKI(t, "CA")
	srvFiles := pki.issue(RoleRegistrar, "reg1")
	srv := mustReloader(t, srvFiles)
	cli := mustReloader(t, pki.issue(RolePE, "echo-1"))
	ccfg, err := cli.ClientConfig(ClientOptions{TrustedServers: []string{"rspxdp://registrar/*"}})
	if err != nil {
		t.Fatal(err)
	}
	p := listenTLS(t, ctx, srv.ServerConfig())

	got := p.acceptOne(ctx)
	old, err := dialTLS(ctx, ccfg, p.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := old.WriteMessage(ctx, registration(t)); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.err != nil {
		t.Fatal(a.err)
	}
	defer a.conn.Close()
	oldSerial := old.Peer().Leaf().SerialNumber

	// Rotate: same name, new key and serial; then a broken rotation
	// that must leave the good material in place.
	pki.issue(RoleRegistrar, "reg1")
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, srvFiles.Cert, []byte("not a certificate"))
	if err := srv.Reload(); err == nil {
		t.Fatal("Reload accepted a broken certificate file")
	}
	newSerial := srv.Leaf().SerialNumber
	if newSerial.Cmp(oldSerial) == 0 {
		t.Fatal("rotation did not change the serial")
	}

	got2 := p.acceptOne(ctx)
	fresh, err := dialTLS(ctx, ccfg, p.ln.Addr().String())
	if err != nil {
		t.Fatalf("dial after reload: %v", err)
	}
	defer fresh.Close()
	if s := fresh.Peer().Leaf().SerialNumber; s.Cmp(newSerial) != 0 {
		t.Errorf("new session got serial %x, want the reloaded %x", s, newSerial)
	}
	if err := fresh.WriteMessage(ctx, registration(t)); err != nil {
		t.Fatal(err)
	}
	if a2 := <-got2; a2.err != nil {
		t.Fatal(a2.err)
	} else {
		a2.conn.Close()
	}

	// The old session still carries messages both ways.
	if err := old.WriteMessage(ctx, registration(t)); err != nil {
		t.Fatalf("old session write after reload: %v", err)
	}
	if _, err := a.conn.ReadMessage(ctx); err != nil {
		t.Fatalf("old session read after reload: %v", err)
	}
	if err := a.conn.WriteMessage(ctx, registration(t)); err != nil {
		t.Fatalf("old session server write after reload: %v", err)
	}
	if _, err := old.ReadMessage(ctx); err != nil {
		t.Fatalf("old session client read after reload: %v", err)
	}
	if s := old.Peer().Leaf().SerialNumber; s.Cmp(oldSerial) != 0 {
		t.Error("old session's peer certificate changed")
	}
}

// recordingProxy forwards one TCP connection to target and records every
// byte in both directions: what an eavesdropper on the path sees.
type recordingProxy struct {
	ln         net.Listener
	mu         sync.Mutex
	seen       bytes.Buffer // both directions, interleaved
	fromClient bytes.Buffer // client to server only
	done       chan struct{}
}

func newRecordingProxy(t *testing.T, target string) *recordingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &recordingProxy{ln: ln, done: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		defer close(p.done)
		in, err := ln.Accept()
		if err != nil {
			return
		}
		defer in.Close()
		out, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer out.Close()
		var wg sync.WaitGroup
		pump := func(dst, src net.Conn, also *bytes.Buffer) {
			defer wg.Done()
			buf := make([]byte, 4096)
			for {
				n, err := src.Read(buf)
				if n > 0 {
					p.mu.Lock()
					p.seen.Write(buf[:n])
					if also != nil {
						also.Write(buf[:n])
					}
					p.mu.Unlock()
					if _, werr := dst.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					// Pass the close on so the other side's read ends.
					dst.Close()
					return
				}
			}
		}
		wg.Add(2)
		go pump(out, in, &p.fromClient)
		go pump(in, out, nil)
		wg.Wait()
	}()
	return p
}

func (p *recordingProxy) captured() []byte {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.seen.Bytes())
}

func (p *recordingProxy) capturedFromClient() []byte {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.fromClient.Bytes())
}

// TestRFC5355_Eavesdropping (RFC 5355 data confidentiality): a
// Registration and its echo cross a recording proxy; with TLS the pool
// handle never appears on the wire, and the same exchange over plain TCP
// shows it (proving the capture would have caught it).
func TestRFC5355_Eavesdropping(t *testing.T) {
	pki := newTestPKI(t, "CA")
	srv := mustReloader(t, pki.issue(RoleRegistrar, "reg1"))
	cli := mustReloader(t, pki.issue(RolePE, "echo-1"))
	ccfg, err := cli.ClientConfig(ClientOptions{TrustedServers: []string{"rspxdp://registrar/*"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		srv, cli  func() (transport.Transport, error)
		wantClear bool
	}{
		{"tls",
			func() (transport.Transport, error) {
				return transport.NewTLS(transport.Config{Logger: quiet, Protocol: transport.ASAP}, srv.ServerConfig())
			},
			func() (transport.Transport, error) {
				return transport.NewTLS(transport.Config{Logger: quiet, Protocol: transport.ASAP}, ccfg)
			},
			false},
		{"plain tcp (control)",
			func() (transport.Transport, error) {
				return transport.NewTCP(transport.Config{Logger: quiet, Protocol: transport.ASAP})
			},
			func() (transport.Transport, error) {
				return transport.NewTCP(transport.Config{Logger: quiet, Protocol: transport.ASAP})
			},
			true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			st, err := tc.srv()
			if err != nil {
				t.Fatal(err)
			}
			ln, err := st.Listen(ctx, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			proxy := newRecordingProxy(t, ln.Addr().String())

			// The server echoes the registration back, so the handle
			// travels in both directions.
			srvDone := make(chan error, 1)
			go func() {
				c, err := ln.Accept(ctx)
				if err != nil {
					srvDone <- err
					return
				}
				defer c.Close()
				m, err := c.ReadMessage(ctx)
				if err != nil {
					srvDone <- err
					return
				}
				srvDone <- c.WriteMessage(ctx, m)
			}()
			ct, err := tc.cli()
			if err != nil {
				t.Fatal(err)
			}
			// Dial the proxy; the certificate's IP SAN is 127.0.0.1, the
			// proxy's address too.
			c, err := ct.Dial(ctx, proxy.ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			reg := registration(t)
			if err := c.WriteMessage(ctx, reg); err != nil {
				t.Fatal(err)
			}
			echo, err := c.ReadMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(echo, reg) {
				t.Fatal("echo differs from the registration")
			}
			if err := <-srvDone; err != nil {
				t.Fatal(err)
			}
			c.Close()
			wireBytes := proxy.captured()
			if len(wireBytes) < 2*len(reg) {
				t.Fatalf("captured %d bytes, less than the two messages (%d each): the proxy missed traffic", len(wireBytes), len(reg))
			}
			if got := bytes.Contains(wireBytes, []byte(testHandle)); got != tc.wantClear {
				t.Errorf("pool handle in the clear on the wire: %v, want %v (%d bytes captured)", got, tc.wantClear, len(wireBytes))
			}
			// The registration's other identifying bytes (the PE's
			// registered address 192.0.2.10) must not leak either.
			addr := netip.MustParseAddr("192.0.2.10").AsSlice()
			if !tc.wantClear && bytes.Contains(wireBytes, addr) {
				t.Errorf("PE address in the clear on the wire")
			}
		})
	}
}

// TestRFC5355_MasqueradingRegistrar: a PE's certificate, valid and from
// the right CA, cannot serve as a registrar to a PU that pins
// rspxdp://registrar/* (RFC 5355 2.6/2.7), and a PE identity may not
// peer (2.5).
func TestRFC5355_MasqueradingRegistrar(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pki := newTestPKI(t, "CA")
	fake := mustReloader(t, pki.issue(RolePE, "evil"))
	real := mustReloader(t, pki.issue(RoleRegistrar, "reg1"))
	pu := mustReloader(t, pki.issue(RolePU, "client"))
	pinned, err := pu.ClientConfig(ClientOptions{TrustedServers: []string{"rspxdp://registrar/*"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		server *Reloader
		ok     bool
	}{
		{"real registrar", real, true},
		{"PE posing as registrar", fake, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := listenTLS(t, ctx, tc.server.ServerConfig())
			got := p.acceptOne(ctx)
			c, err := dialTLS(ctx, pinned, p.ln.Addr().String())
			if (err == nil) != tc.ok {
				t.Fatalf("dial err %v, want ok=%v", err, tc.ok)
			}
			if err == nil {
				_ = c.WriteMessage(ctx, registration(t))
				if a := <-got; a.conn != nil {
					a.conn.Close()
				}
				c.Close()
			}
		})
	}
	pol, err := ParsePolicy([]byte("version: 1\nrules:\n  - identity: rspxdp://registrar/*\n    peer: true\n  - identity: rspxdp://pe/*\n    register: ['*']\n"))
	if err != nil {
		t.Fatal(err)
	}
	if pol.MayPeer(CertIdentity(fake.Leaf())) {
		t.Error("a PE identity may peer")
	}
	if !pol.MayPeer(CertIdentity(real.Leaf())) {
		t.Error("a registrar identity may not peer")
	}
}

func TestReloaderErrors(t *testing.T) {
	pki := newTestPKI(t, "CA")
	f := pki.issue(RolePE, "a")
	g := pki.issue(RolePE, "b")
	for _, tc := range []struct {
		name  string
		files Files
	}{
		{"missing CA path", Files{Cert: f.Cert, Key: f.Key}},
		{"CA file absent", Files{CA: f.CA + ".nope", Cert: f.Cert, Key: f.Key}},
		{"CA file not PEM", Files{CA: f.Key + ".x", Cert: f.Cert, Key: f.Key}},
		{"key of another certificate", Files{CA: f.CA, Cert: f.Cert, Key: g.Key}},
		{"key file is a certificate", Files{CA: f.CA, Cert: f.Cert, Key: f.Cert}},
	} {
		if tc.name == "CA file not PEM" {
			writeTestFile(t, tc.files.CA, []byte("garbage"))
		}
		if _, err := NewReloader(tc.files); err == nil {
			t.Errorf("%s: NewReloader succeeded", tc.name)
		}
	}
	r := mustReloader(t, f)
	if _, err := r.ClientConfig(ClientOptions{TrustedServers: []string{""}}); err == nil {
		t.Error("empty trusted-server pattern accepted")
	}
}

// TestRFC5355_ReplayedRegistration (RFC 5355 2.8): an attacker who
// recorded a PE's whole TLS connection (handshake and Registration) and
// plays the client's bytes back to the registrar gets nothing accepted:
// the server's fresh handshake randomness makes the recording useless.
func TestRFC5355_ReplayedRegistration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pki := newTestPKI(t, "CA")
	srv := mustReloader(t, pki.issue(RoleRegistrar, "reg1"))
	cli := mustReloader(t, pki.issue(RolePE, "echo-1"))
	ccfg, err := cli.ClientConfig(ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := listenTLS(t, ctx, srv.ServerConfig())
	proxy := newRecordingProxy(t, p.ln.Addr().String())

	// The genuine exchange, recorded.
	got := p.acceptOne(ctx)
	c, err := dialTLS(ctx, ccfg, proxy.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(ctx, registration(t)); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.err != nil {
		t.Fatalf("genuine registration: %v", a.err)
	}
	c.Close()
	a.conn.Close()
	recorded := proxy.capturedFromClient()
	if !bytes.Contains(recorded, []byte{0x16, 0x03}) { // a TLS handshake record
		t.Fatalf("recording holds no TLS handshake (%d bytes)", len(recorded))
	}

	// The replay.
	got = p.acceptOne(ctx)
	raw, err := net.Dial("tcp", p.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_, _ = raw.Write(recorded) // the server may cut it off part way
	r := <-got
	if r.err == nil {
		t.Fatal("registrar accepted a message from a replayed connection")
	}
	if r.conn != nil && r.conn.Peer().Authenticated() {
		t.Error("replayed connection authenticated")
	}
}

// TestReloadConcurrent reloads while handshakes look the material up, for
// the race detector: every lookup sees one whole load, never a mix.
func TestReloadConcurrent(t *testing.T) {
	pki := newTestPKI(t, "CA")
	files := pki.issue(RoleRegistrar, "reg1")
	r := mustReloader(t, files)
	srvCfg := r.ServerConfig()
	cliCfg, err := r.ClientConfig(ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := srvCfg.GetConfigForClient(&tls.ClientHelloInfo{})
				if err != nil || len(c.Certificates) != 1 || c.ClientCAs == nil {
					t.Error("incomplete server config during reload")
					return
				}
				cert, err := cliCfg.GetClientCertificate(&tls.CertificateRequestInfo{})
				if err != nil || cert.Leaf == nil {
					t.Error("incomplete client certificate during reload")
					return
				}
			}
		}()
	}
	for range 20 {
		if err := r.Reload(); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
}

// BenchmarkMutualTLSHandshake: the cost of one ASAP association's TLS 1.3
// mutual-auth handshake and first message over loopback (ECDSA P-256),
// what a registrar pays per connecting PE or PU.
func BenchmarkMutualTLSHandshake(b *testing.B) {
	ctx := context.Background()
	pki := newTestPKI(b, "CA")
	srv := mustReloader(b, pki.issue(RoleRegistrar, "reg1"))
	cli := mustReloader(b, pki.issue(RolePE, "echo-1"))
	ccfg, _ := cli.ClientConfig(ClientOptions{TrustedServers: []string{"rspxdp://registrar/*"}})
	str, _ := transport.NewTLS(transport.Config{Logger: quiet, Protocol: transport.ASAP}, srv.ServerConfig())
	ln, err := str.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if m, err := c.ReadMessage(ctx); err == nil {
					_ = c.WriteMessage(ctx, m)
				}
			}()
		}
	}()
	ctr, _ := transport.NewTLS(transport.Config{Logger: quiet, Protocol: transport.ASAP}, ccfg)
	msg := registration(b)
	for b.Loop() {
		c, err := ctr.Dial(ctx, ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		if err := c.WriteMessage(ctx, msg); err != nil {
			b.Fatal(err)
		}
		if _, err := c.ReadMessage(ctx); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// TestReloadCABundle: a client whose certificate comes from a new CA is
// refused until the server's bundle gains that CA and is reloaded, with
// no restart; and resumption is off, so no session outlives a bundle.
func TestReloadCABundle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pki := newTestPKI(t, "old CA")
	newCA := newTestPKI(t, "new CA")
	srvFiles := pki.issue(RoleRegistrar, "reg1")
	srv := mustReloader(t, srvFiles)
	nf := newCA.issue(RolePE, "echo-9")
	cli := mustReloader(t, Files{CA: srvFiles.CA, Cert: nf.Cert, Key: nf.Key})
	ccfg, err := cli.ClientConfig(ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := listenTLS(t, ctx, srv.ServerConfig())
	try := func() error {
		got := p.acceptOne(ctx)
		c, err := dialTLS(ctx, ccfg, p.ln.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.WriteMessage(ctx, registration(t))
		a := <-got
		if a.conn != nil {
			a.conn.Close()
		}
		return a.err
	}
	if err := try(); err == nil {
		t.Fatal("client from a CA not in the bundle accepted")
	}
	bundle := append(CertPEM(pki.ca.Cert), CertPEM(newCA.ca.Cert)...)
	writeTestFile(t, srvFiles.CA, bundle)
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := try(); err != nil {
		t.Fatalf("client from the added CA refused after reload: %v", err)
	}

	// Resumption: a client with a session cache connecting twice must
	// do two full handshakes.
	ccfg2 := ccfg.Clone()
	ccfg2.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	ccfg2.ServerName = "127.0.0.1"
	tl, err := tls.Listen("tcp", "127.0.0.1:0", srv.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1)
				_, _ = c.Read(buf)
				_, _ = c.Write(buf)
			}()
		}
	}()
	for i := range 2 {
		c, err := tls.Dial("tcp", tl.Addr().String(), ccfg2)
		if err != nil {
			t.Fatal(err)
		}
		// Exchange a byte so the client has processed any ticket.
		_, _ = c.Write([]byte{1})
		_, _ = c.Read(make([]byte, 1))
		if c.ConnectionState().DidResume {
			t.Errorf("connection %d resumed a session", i)
		}
		c.Close()
	}
}
