package enrp

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/wire"
)

func presenceFrom(id uint32) Presence {
	return Presence{Header: Header{Sender: id, Receiver: 1}, Checksum: 0xffff,
		Info: ServerInfo{ID: id, ENRP: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(9000+id%50000))}}
}

// Who becomes a peer (issue 19 item 2, issue 14 item 7): only a plausible
// Presence; one connection speaks for one registrar; the table is bounded.
func TestPeerAdmission(t *testing.T) {
	tests := []struct {
		name  string
		steps func(c *Core)
		want  int
	}{
		{"presence with server information", func(c *Core) { c.Step(2, netip.Addr{}, presenceFrom(2)) }, 1},
		{"presence without server information", func(c *Core) {
			c.Step(2, netip.Addr{}, Presence{Header: Header{Sender: 2, Receiver: 1}})
		}, 0},
		{"server information names another", func(c *Core) {
			p := presenceFrom(2)
			p.Info.ID = 3
			c.Step(2, netip.Addr{}, p)
		}, 0},
		{"list request from a stranger (a PU's resolution on the ENRP port)", func(c *Core) {
			c.Step(2, netip.Addr{}, ListRequest{Header: Header{Sender: 0x00090008, Receiver: 0x00040065}})
		}, 0},
		{"handle update from a stranger", func(c *Core) {
			pe := testPE(1)
			pe.Home = 2
			c.Step(2, netip.Addr{}, HandleUpdate{Header: Header{Sender: 2, Receiver: 1}, Handle: "a", PE: pe})
		}, 0},
		{"15,000 invented senders on one connection", func(c *Core) {
			for id := uint32(2); id < 15002; id++ {
				c.Step(7, netip.Addr{}, presenceFrom(id))
			}
		}, 1},
		{"one connection each, past the bound", func(c *Core) {
			for id := uint32(2); id < 2+3*DefaultMaxPeers; id++ {
				c.Step(LinkID(id), netip.Addr{}, presenceFrom(id))
			}
		}, DefaultMaxPeers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newTestCore(t, 1)
			tt.steps(c)
			c.Drain()
			if got := len(c.peers); got != tt.want {
				t.Fatalf("%d peers, want %d", got, tt.want)
			}
		})
	}
}

// The takeover work a flood of invented peers can cause is bounded by the
// peer table: when they all fall silent, the messages sent stay within
// MaxPeers squared.
func TestForgedPeerTakeoverBounded(t *testing.T) {
	c, now := newTestCore(t, 1)
	for id := uint32(2); id < 2000; id++ {
		c.Step(LinkID(id), netip.Addr{}, presenceFrom(id))
	}
	c.Drain()
	sent := 0
	for i := 0; i < 40; i++ {
		now = now.Add(100 * time.Millisecond)
		c.Tick(now)
		sent += len(c.Drain())
	}
	if limit := 4 * DefaultMaxPeers * DefaultMaxPeers; sent > limit {
		t.Fatalf("%d messages after the invented peers went silent, want at most %d", sent, limit)
	}
	t.Logf("%d messages for %d admitted peers", sent, DefaultMaxPeers)
}

// A Leaving Presence naming a live peer but arriving on another connection
// than the peer's is ignored: one forged message must not start a takeover
// (issue 19 item 6).
func TestForgedLeavingPresenceIgnored(t *testing.T) {
	c, _ := newTestCore(t, 1)
	hello(c, 2, 2)
	pe := testPE(5)
	pe.Home = 2
	c.Step(2, netip.Addr{}, HandleUpdate{Header: Header{Sender: 2, Receiver: 1}, Handle: "a", PE: pe})
	c.Drain()
	forged := presenceFrom(2)
	forged.Leaving = true
	c.Step(9, netip.Addr{}, forged)
	if p := c.peers[2]; p == nil || p.dead || p.takeover != nil {
		t.Fatalf("forged leave acted on: %+v", p)
	}
	if n := len(msgsOf[InitTakeover](c.Drain())); n != 0 {
		t.Fatalf("%d Init Takeovers after a forged leave", n)
	}
	// The same on the peer's own connection is a real leave.
	c.Step(2, netip.Addr{}, forged)
	if c.owned[peKey{"a", 5}] == nil {
		t.Fatal("a leave on the peer's own connection was ignored: its PE not taken over")
	}
}

// A client speaking the other protocol is cut off at once with a logged
// reason, so it fails fast, and leaves no phantom peer (issue 14 item 7).
func TestWrongProtocolClosed(t *testing.T) {
	cfg := tcpConfig(1)
	n := startNode(t, cfg)
	resolution, err := Encode(HandleResolution{Handle: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	dump, err := Encode(HandleTableRequest{Header: Header{Sender: 0x1234, Receiver: 0}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		addr string
		msg  []byte
	}{
		{"PU on the ENRP port", n.srv.ENRPAddr().String(), resolution},
		{"status on the ASAP port", n.srv.ASAPAddr().String(), dump},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dialFrom(t, "127.0.0.1", tc.addr)
			start := time.Now()
			if err := r.conn.WriteMessage(context.Background(), tc.msg); err != nil {
				t.Fatal(err)
			}
			if !closedByServer(r, 3*time.Second) {
				t.Fatal("connection not closed")
			}
			t.Logf("closed after %v", time.Since(start))
		})
	}
	if p := n.srv.Peers(); len(p) != 0 {
		t.Fatalf("peers %v after a PU's message on the ENRP port", p)
	}
	if got := n.srv.stats.notThisProtocol.Load(); got != 2 {
		t.Fatalf("notThisProtocol = %d, want 2", got)
	}
}

// A flood of broken messages gets a bounded number of answers (issue 19
// item 8: the flood was amplified 13 times).
func TestBrokenMessageRepliesRateLimited(t *testing.T) {
	n := startNode(t, tcpConfig(1))
	r := dialFrom(t, "127.0.0.1", n.srv.ASAPAddr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	first := rawMsg(wire.ASAP, 0x42, 0, 0, []byte{1, 2, 3, 4})
	const sent = 2000
	for range sent {
		if err := r.conn.WriteMessage(ctx, first); err != nil {
			t.Fatal(err)
		}
	}
	got := 0
	for {
		rctx, c := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err := r.conn.ReadMessage(rctx)
		c()
		if err != nil {
			break
		}
		got++
	}
	t.Logf("%d answers to %d broken messages", got, sent)
	if got == 0 || got > replyBurst+replyRate*5 {
		t.Fatalf("%d answers to %d broken messages, want 1..%d", got, sent, replyBurst+replyRate*5)
	}
}
