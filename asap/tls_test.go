package asap

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/enrp"
	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/security"
	"github.com/rspxdp/rspxdp/security/securitytest"
)

// startTLSRegistrar runs one registrar with TLS and tlsPolicy.
func startTLSRegistrar(t *testing.T, p *securitytest.PKI) string {
	t.Helper()
	if k := testenv.Transport(); k != "tcp" {
		t.Skipf("TLS runs over TCP; this run tests %s", k)
	}
	srv, err := enrp.NewServer(context.Background(), enrp.ServerConfig{
		Config:     enrp.Config{ID: 1, KeepAliveInterval: itKA, KeepAliveTimeout: itKA, DrainTimeout: -1, Logger: quiet()},
		ASAPListen: "127.0.0.1:0", ENRPListen: "127.0.0.1:0",
		Security: &enrp.Security{TLS: p.Reloader(t, security.RoleRegistrar, "r1"), Policy: p.PolicyFile(t)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv.ASAPAddr().String()
}

func tlsOpt(t *testing.T, p *securitytest.PKI, role security.Role, name string) Option {
	t.Helper()
	tr, err := TLSTransport(p.Reloader(t, role, name))
	if err != nil {
		t.Fatal(err)
	}
	return WithTransport(tr)
}

// A PE registers and a PU reaches it through a registrar over TLS with
// mutual authentication; a PE whose identity may not serve the pool is
// refused (RFC 5355 masquerading PE), and a PU refuses a "registrar"
// whose certificate is a PE's (masquerading registrar).
func TestTLSRegistration(t *testing.T) {
	p := securitytest.New(t)
	reg := startTLSRegistrar(t, p)
	startEchoPE(t, "echo", []string{reg}, tlsOpt(t, p, security.RolePE, "echo-1"))

	c, err := Dial(context.Background(), "echo", WithRegistrars(reg), WithLogger(quiet()), tlsOpt(t, p, security.RolePU, "client"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoRound(t, c, bufio.NewReader(c), "over tls")

	// A PU certificate may not register.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if pe, err := Register(ctx, "echo", ln, WithRegistrars(reg), WithLogger(quiet()),
		WithResponseTimeout(500*time.Millisecond), tlsOpt(t, p, security.RolePU, "client")); err == nil {
		pe.abort()
		t.Fatal("a PU certificate registered a PE")
	}

	// Plain TCP to the TLS registrar gets nowhere.
	if _, err := Dial(ctx, "echo", WithRegistrars(reg), WithLogger(quiet()), WithResponseTimeout(500*time.Millisecond)); err == nil {
		t.Fatal("plain TCP PU resolved through a TLS registrar")
	}
}
