package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestTLSMutualIdentity(t *testing.T) {
	p := testPKI(t)
	cfg := quietConfig(t, ASAP)
	srv, err := NewTLS(cfg, p.serverConfig("registrar.test"))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := NewTLS(cfg, p.clientConfig("pe1.test"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := srv.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type seen struct {
		before, after Identity
		err           error
	}
	res := make(chan seen, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			res <- seen{err: err}
			return
		}
		defer c.Close()
		s := seen{before: c.Peer()}
		m, err := c.ReadMessage(ctx)
		if err == nil {
			err = c.WriteMessage(ctx, m)
		}
		s.after, s.err = c.Peer(), err
		res <- s
	}()
	c, err := cli.Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if leaf := c.Peer().Leaf(); leaf == nil || !slices.Contains(leaf.DNSNames, "registrar.test") {
		t.Fatalf("client sees server identity %v", c.Peer())
	}
	if err := c.WriteMessage(ctx, msg(1, 20, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadMessage(ctx); err != nil {
		t.Fatal(err)
	}
	s := <-res
	if s.err != nil {
		t.Fatal(s.err)
	}
	if s.before.Authenticated() {
		t.Errorf("accepted conn claimed an identity before its handshake")
	}
	if leaf := s.after.Leaf(); !s.after.Authenticated() || leaf == nil || !slices.Contains(leaf.DNSNames, "pe1.test") {
		t.Fatalf("server sees client identity %+v", s.after)
	}
	if len(s.after.Chain) != 2 || !s.after.Chain[1].Equal(p.caCert) {
		t.Errorf("chain does not end at the test CA: %d certificates", len(s.after.Chain))
	}
}

// Peers that fail authentication are cut off and logged; the listener goes
// on serving authenticated clients.
func TestTLSRejectsUnauthenticatedPeers(t *testing.T) {
	p := testPKI(t)
	other := newPKI() // a CA nobody trusts
	cfg := quietConfig(t, ASAP)
	cfg.HandshakeTimeout = 1500 * time.Millisecond
	pair := newTLSPair(t, cfg)
	s := startEcho(t, pair.server, "127.0.0.1:0")
	addr := s.ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cases := []struct {
		name string
		act  func() error // the peer's attempt; must fail
		want error        // the server's error, when typed
	}{
		{name: "NoClientCertificate", act: func() error {
			noCert := &tls.Config{RootCAs: p.pool}
			tr, _ := NewTLS(cfg, noCert)
			c, err := tr.Dial(ctx, addr)
			if err != nil {
				return err
			}
			defer c.Close()
			// TLS 1.3: the server's verdict on our certificate arrives
			// after the client's handshake is done.
			if err := c.WriteMessage(ctx, msg(1, 8, 1)); err != nil {
				return err
			}
			_, err = c.ReadMessage(ctx)
			return err
		}},
		{name: "ClientCertificateFromUntrustedCA", act: func() error {
			cc := other.clientConfig("mallory.test")
			cc.RootCAs = p.pool
			tr, _ := NewTLS(cfg, cc)
			c, err := tr.Dial(ctx, addr)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.WriteMessage(ctx, msg(1, 8, 1)); err != nil {
				return err
			}
			_, err = c.ReadMessage(ctx)
			return err
		}},
		{name: "PlaintextASAP", act: func() error {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			defer c.Close()
			c.Write(msg(1, 16, 1))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.ReadAll(c) // the server answers with an alert at most, then closes
			if err != nil {
				return err
			}
			return errors.New("server closed") // closing is the expected failure
		}},
		{name: "SilentBeforeHandshake", want: ErrStalled, act: func() error {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(make([]byte, 10))
			if err == nil {
				return errors.New("server sent data to a silent client")
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil // never closed: the test fails below
			}
			_ = n
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.act(); err == nil {
				t.Fatal("unauthenticated peer got through")
			} else {
				t.Logf("peer saw: %v", err)
			}
			var err error
			for err == nil { // nil: an earlier authenticated client left cleanly
				select {
				case err = <-s.ended:
				case <-time.After(5 * time.Second):
					t.Fatal("server never ended the connection")
				}
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("server: %v, want %v", err, tc.want)
			}
			t.Logf("server: %v", err)
			if err := roundTrips(ctx, pair.server, addr, 3, 5); err != nil {
				t.Fatalf("authenticated client after the attempt: %v", err)
			}
		})
	}
}

func TestTLSClientRefusesUntrustedServer(t *testing.T) {
	p := testPKI(t)
	cfg := quietConfig(t, ENRP)
	srv, _ := NewTLS(cfg, p.serverConfig("registrar.test"))
	ln, err := srv.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept(context.Background())
		if err == nil {
			c.ReadMessage(context.Background())
			c.Close()
		}
	}()
	cc := p.clientConfig("pe1.test")
	cc.RootCAs = x509.NewCertPool() // trusts nobody
	cli, _ := NewTLS(cfg, cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := cli.Dial(ctx, ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("dialled a server whose certificate we cannot verify")
	} else {
		var uae x509.UnknownAuthorityError
		if !errors.As(err, &uae) {
			t.Logf("error (not UnknownAuthority, still a refusal): %v", err)
		}
	}
}

// What TLS is for (RFC 5355 eavesdropping): the bytes between the peers
// must not contain the message in the clear. Plain TCP is the control.
func TestTLSHidesMessagesOnTheWire(t *testing.T) {
	secret := []byte("pool-handle:payments-eu")
	for _, useTLS := range []bool{false, true} {
		cfg := quietConfig(t, ASAP)
		var tr Transport
		if useTLS {
			tr = newTLSPair(t, cfg).server
		} else {
			tr, _ = NewTCP(cfg)
		}
		s := startEcho(t, tr, "127.0.0.1:0")
		wire, proxyAddr := recordingProxy(t, s.ln.Addr().String())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := tr.Dial(ctx, proxyAddr)
		if err != nil {
			t.Fatal(err)
		}
		m := append(msg(1, 8, 1), secret...)
		m[3] = byte(len(m))
		if err := c.WriteMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
		if got, err := c.ReadMessage(ctx); err != nil || !bytes.Equal(got, m) {
			t.Fatalf("echo: %v", err)
		}
		c.Close()
		cancel()
		seen := wire()
		if len(seen) == 0 {
			t.Fatal("proxy recorded nothing")
		}
		if got := bytes.Contains(seen, secret); got == useTLS {
			t.Errorf("TLS %v: message visible on the wire = %v", useTLS, got)
		}
	}
}

// recordingProxy forwards one connection to target and returns everything
// that crossed it in both directions.
func recordingProxy(t *testing.T, target string) (func() []byte, string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer ln.Close()
		a, err := ln.Accept()
		if err != nil {
			return
		}
		defer a.Close()
		b, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer b.Close()
		rec := func(dst, src net.Conn, wg *sync.WaitGroup) {
			defer wg.Done()
			p := make([]byte, 4096)
			for {
				n, err := src.Read(p)
				if n > 0 {
					mu.Lock()
					buf.Write(p[:n])
					mu.Unlock()
					dst.Write(p[:n])
				}
				if err != nil {
					dst.Close()
					return
				}
			}
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go rec(a, b, &wg)
		go rec(b, a, &wg)
		wg.Wait()
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return func() []byte {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		mu.Lock()
		defer mu.Unlock()
		return bytes.Clone(buf.Bytes())
	}, ln.Addr().String()
}
