package enrp

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
	"github.com/rspxdp/rspxdp/wire"
)

// TestAbortedAssociationRemovesPE: a PE whose association is reset (TCP
// RST here; SCTP ABORT reads the same, see transport's TestSCTPSession) is
// removed at once, as rsplib removes it, while one that shut its
// connection down keeps its registration until keep-alives decide (issue
// 15 item 8). Keep-alives are a minute apart, so only the reset can remove
// the PE within the test.
func TestAbortedAssociationRemovesPE(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reset   bool
		removed bool
	}{
		{"reset", true, true},
		{"shutdown", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := itConfig(1)
			cfg.Transport = "tcp" // the reset is TCP's; SCTP's ABORT is the transport's test
			cfg.KeepAliveInterval, cfg.KeepAliveTimeout = time.Minute, time.Minute
			n := startNode(t, cfg)
			c, err := net.Dial("tcp", n.srv.ASAPAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			pe := PoolElement{ID: 7, Lifetime: time.Minute, Policy: policy.RoundRobin(),
				Transport: selector.Transport{Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Port: 7, Protocol: selector.TCP}}
			b, err := Encode(Registration{Handle: "p", PE: pe})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
			resp := make([]byte, 512)
			_ = c.SetReadDeadline(time.Now().Add(testenv.Scaled(5 * time.Second)))
			k, err := c.Read(resp)
			if err != nil {
				t.Fatal(err)
			}
			if m, err := Decode(wire.ASAP, resp[:k]); err != nil || m.(RegistrationResponse).Reject {
				t.Fatalf("registration answered %v, %v", m, err)
			}
			if tc.reset {
				_ = c.(*net.TCPConn).SetLinger(0) // close sends RST
			}
			closed := time.Now()
			c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), testenv.Scaled(2*time.Second))
			defer cancel()
			for n.srv.Count() != 0 && ctx.Err() == nil {
				time.Sleep(10 * time.Millisecond)
			}
			if got := n.srv.Count() == 0; got != tc.removed {
				t.Fatalf("PE removed %v %v after the close, want %v", got, time.Since(closed).Round(time.Millisecond), tc.removed)
			}
			if tc.removed {
				t.Logf("PE removed %v after the reset", time.Since(closed).Round(time.Millisecond))
			}
		})
	}
}
