package asap

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/transport"
)

// introduce sends an ENRP Presence for the handlespace reader self on c: an
// empty handlespace, reachable at c's own address. rsplib's registrar
// refuses a Handle Table Request from a server it has not heard a Presence
// from, and drops a Presence whose ENRP address is not the association's
// source, so the address is the connection's local one.
func introduce(ctx context.Context, c transport.Conn, self uint32, kind string, timeout time.Duration) error {
	local, err := connAddrPort(c)
	if err != nil {
		return err
	}
	proto := selector.TCP
	if kind == "sctp" {
		proto = selector.SCTP
	}
	b, err := msg.Encode(msg.Presence{
		Header:   msg.Header{Sender: self},
		Checksum: fold(0), // no PEs
		Info:     msg.ServerInfo{ID: self, ENRP: local, Protocol: proto},
	})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.WriteMessage(wctx, b)
}

// connAddrPort returns c's local address as one address and port: the
// first of a multi-homed SCTP endpoint's ("ip1/ip2:port").
func connAddrPort(c transport.Conn) (netip.AddrPort, error) {
	if c.LocalAddr() == nil {
		return netip.AddrPort{}, fmt.Errorf("connection has no local address")
	}
	s := c.LocalAddr().String()
	if i := strings.LastIndexByte(s, ':'); i > 0 {
		if j := strings.IndexByte(s[:i], '/'); j >= 0 {
			s = s[:j] + s[i:]
		}
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("local address %q: %w", c.LocalAddr(), err)
	}
	return ap, nil
}
