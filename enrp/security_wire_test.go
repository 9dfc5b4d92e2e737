package enrp

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rspxdp/rspxdp/security"
	"github.com/rspxdp/rspxdp/security/securitytest"
	"github.com/rspxdp/rspxdp/transport"
)

// recorder is a TCP proxy to target that keeps every byte it forwards.
type recorder struct {
	ln  net.Listener
	mu  sync.Mutex
	buf bytes.Buffer
}

func record(t *testing.T, target string) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			pipe := func(dst, src net.Conn) {
				defer dst.Close()
				_, _ = io.Copy(io.MultiWriter(dst, r), src)
			}
			go pipe(s, c)
			go pipe(c, s)
		}
	}()
	return r
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(b)
}

func (r *recorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.buf.Bytes())
}

// TestRFC5355_Section3_Eavesdropping: with TLS on, a registration and a
// resolution cross the wire without their pool handle or the PE's address
// in the clear; the same exchange over plain TCP shows both (so the check
// can fail).
func TestRFC5355_Section3_Eavesdropping(t *testing.T) {
	pe := testPE(1)
	secret := [][]byte{[]byte("echo"), pe.Transport.Addrs[0].AsSlice()}
	exchange := func(r *rpc) {
		callT(t, r, Registration{Handle: "echo", PE: pe})
		callT(t, r, HandleResolution{Handle: "echo"})
	}
	leaks := func(wire []byte) (n int) {
		for _, s := range secret {
			if bytes.Contains(wire, s) {
				n++
			}
		}
		return n
	}

	p := securitytest.New(t)
	n := secureNode(t, p, nil)
	rec := record(t, n.srv.ASAPAddr().String())
	exchange(mustTLSClient(t, p, security.RolePE, "alice", rec.ln.Addr().String()))
	if w := rec.bytes(); len(w) == 0 || leaks(w) != 0 {
		t.Fatalf("TLS: %d bytes recorded, %d secrets in the clear", len(w), leaks(w))
	}

	pcfg := itConfig(2)
	pcfg.Transport = "tcp" // the proxy records TCP
	plain := startNode(t, pcfg)
	prec := record(t, plain.srv.ASAPAddr().String())
	tr, err := transport.NewTCP(transport.Config{Protocol: transport.ASAP, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tr.Dial(context.Background(), prec.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exchange(&rpc{conn: conn})
	if got := leaks(prec.bytes()); got != len(secret) {
		t.Fatalf("plain TCP control: %d of %d secrets seen, the check is blind", got, len(secret))
	}
}

// TestSecurityReload: new certificate files and Reload take effect for the
// next handshake while an open session carries on.
func TestSecurityReload(t *testing.T) {
	p := securitytest.New(t)
	n := secureNode(t, p, nil)
	addr := n.srv.ASAPAddr().String()
	before := mustTLSClient(t, p, security.RolePU, "client", addr)
	callT(t, before, HandleResolution{Handle: "echo"})

	// Rotate: a new registrar certificate written over r1's files.
	p.Reloader(t, security.RoleRegistrar, "r1-rotated")
	for _, f := range []string{".pem", "-key.pem"} {
		b, err := os.ReadFile(filepath.Join(p.Dir, "registrar-r1-rotated"+f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p.Dir, "registrar-r1"+f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.srv.cfg.Security.TLS.Reload(); err != nil {
		t.Fatal(err)
	}
	callT(t, before, HandleResolution{Handle: "echo"}) // the open session survives
	after := mustTLSClient(t, p, security.RolePU, "client", addr)
	if id := security.CertIdentity(after.conn.Peer().Leaf()); !id.Matches("rspxdp://registrar/r1-rotated") {
		t.Fatalf("new handshake saw %v, want the rotated certificate", id)
	}
	callT(t, after, HandleResolution{Handle: "echo"})
}
