package asap

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/enrp"
	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/transport"
)

// otherNetListener is a listener that says it serves on network at addr
// (nothing answers there): a PE whose user transport is not TCP.
type otherNetListener struct {
	net.Listener
	addr fakeAddr
}

type fakeAddr struct{ network, addr string }

func (a fakeAddr) Network() string { return a.network }
func (a fakeAddr) String() string  { return a.addr }

func (l otherNetListener) Addr() net.Addr { return l.addr }

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// TestPEUserTransportKind: the Pool Element's user transport names the
// protocol the PE's listener serves on (issue 15 item 1: an SCTP PE was
// advertised as TCP and rsplib refused it), and a pool user never reports a
// PE whose transport it cannot use (item 3: the registrars removed live
// rsplib PEs that a TCP-only pool user had "failed" to reach).
func TestPEUserTransportKind(t *testing.T) {
	type tc struct {
		network string
		want    selector.Protocol
	}
	cases := []tc{{"udp", selector.UDP}}
	if transport.SCTPSupported() != nil {
		// Where SCTP sessions cannot be opened, an SCTP PE is one the
		// pool user cannot use.
		cases = append(cases, tc{"sctp", selector.SCTP})
	}
	for _, c := range cases {
		t.Run(c.network, func(t *testing.T) {
			rs := startTunedRegistrars(t, 1, func(cfg *enrp.ServerConfig) {
				cfg.MaxBadPEReports = 1 // a single report removes the PE
			})
			regs := addrs(rs)
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := otherNetListener{Listener: inner, addr: fakeAddr{c.network, closedPort(t)}}
			ctx, cancel := context.WithTimeout(context.Background(), testenv.Scaled(5*time.Second))
			defer cancel()
			pe, err := Register(ctx, "other", ln, itRegistrars(regs...), WithLogger(quiet()))
			if err != nil {
				t.Fatal(err)
			}
			defer pe.abort()
			u, err := NewPoolUser(itRegistrars(regs...), WithLogger(quiet()))
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			pes, err := u.Resolve(ctx, "other")
			if err != nil || len(pes) != 1 || pes[0].Protocol != c.want {
				t.Fatalf("resolved %+v, %v: want one PE over %s", pes, err, c.want)
			}
			for i := 0; i < 3; i++ {
				if _, err := u.Dial(ctx, "other"); !errors.Is(err, ErrUnusableTransport) {
					t.Fatalf("dial %d: %v, want ErrUnusableTransport", i, err)
				}
			}
			// A report would have removed it at once; give one a moment.
			time.Sleep(testenv.Scaled(200 * time.Millisecond))
			if n := rs[0].srv.Count(); n != 1 {
				t.Fatalf("registrar holds %d PEs after the dials, want the live one", n)
			}
		})
	}
}

// sctpNamed is a transport that says it is SCTP.
type sctpNamed struct{ transport.Transport }

func (sctpNamed) Name() string { return "sctp" }

// TestPEASAPTransportKind: the PE's ASAP transport parameter names the
// transport its ASAP endpoint listens on. An SCTP PE advertised it as TCP,
// and rsplib refused the Handle Updates carrying it ("invalid
// registrator", 0xf006), so an rspxdp PE homed at an rspxdp registrar was
// missing at every rsplib registrar.
func TestPEASAPTransportKind(t *testing.T) {
	base, err := transport.New(testenv.Transport(), transport.Config{Protocol: transport.ASAP, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	native := selector.TCP
	if base.Name() == "sctp" {
		native = selector.SCTP
	}
	for _, tc := range []struct {
		name string
		tr   transport.Transport
		want selector.Protocol
	}{
		{base.Name(), base, native},
		{"named sctp", sctpNamed{base}, selector.SCTP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := startRegistrars(t, 1)
			e := startEchoPE(t, "echo", addrs(rs), WithTransport(tc.tr))
			snap := rs[0].srv.Snapshot()
			if len(snap) != 1 || len(snap[0].PEs) != 1 || snap[0].PEs[0].ID != e.pe.ID() {
				t.Fatalf("handlespace %+v: want the one PE", snap)
			}
			if got := snap[0].PEs[0].ASAPProtocol; got != tc.want {
				t.Fatalf("PE's ASAP transport %s, want %s", got, tc.want)
			}
		})
	}
}
