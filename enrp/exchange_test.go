package enrp

import (
	"net/netip"
	"testing"
	"time"
)

// Message-level tests on one Core: feed a message, check what it sends.

func newTestCore(t *testing.T, id uint32) (*Core, time.Time) {
	t.Helper()
	now := time.Unix(1000, 0)
	c, err := NewCore(testConfig(id), now)
	if err != nil {
		t.Fatal(err)
	}
	c.MarkSynced()
	return c, now
}

func hello(c *Core, link LinkID, peer uint32) {
	c.Step(link, netip.Addr{}, Presence{Header: Header{Sender: peer, Receiver: c.ID()}, Checksum: 0xffff,
		Info: ServerInfo{ID: peer, ENRP: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(9000+peer))}})
	c.Drain()
}

func msgsOf[T Message](outs []Output) []T {
	var r []T
	for _, o := range outs {
		if m, ok := o.Msg.(T); ok {
			r = append(r, m)
		}
	}
	return r
}

func TestListRequestAndResponse(t *testing.T) {
	c, _ := newTestCore(t, 1)
	hello(c, 2, 2)
	hello(c, 3, 3)
	c.Step(2, netip.Addr{}, ListRequest{Header: Header{Sender: 2, Receiver: 1}})
	lr := msgsOf[ListResponse](c.Drain())
	if len(lr) != 1 || len(lr[0].Servers) != 2 || lr[0].Receiver != 2 {
		t.Fatalf("list response %+v", lr)
	}
	// A List Response naming a server we have no link to makes us connect.
	c.Step(2, netip.Addr{}, ListResponse{Header: Header{Sender: 2, Receiver: 1},
		Servers: []ServerInfo{{ID: 9, ENRP: netip.MustParseAddrPort("127.0.0.1:9909")}, {ID: 1}}})
	outs := c.Drain()
	if len(outs) != 1 || !outs[0].ConnectPeer || outs[0].Dial.Port() != 9909 {
		t.Fatalf("outputs %+v, want one connect to 9909", outs)
	}
}

func TestHandleTableRequestOwnChildrenOnly(t *testing.T) {
	c, _ := newTestCore(t, 1)
	hello(c, 2, 2)
	c.Step(10, netip.Addr{}, Registration{Handle: "a", PE: testPE(1)})
	pe := testPE(2)
	pe.Home = 2
	c.Step(2, netip.Addr{}, HandleUpdate{Header: Header{Sender: 2, Receiver: 1}, Handle: "a", PE: pe})
	c.Drain()
	for _, tc := range []struct {
		own  bool
		want int
	}{{true, 1}, {false, 2}} {
		c.Step(2, netip.Addr{}, HandleTableRequest{Header: Header{Sender: 2, Receiver: 1}, OwnOnly: tc.own})
		r := msgsOf[HandleTableResponse](c.Drain())
		n := 0
		for _, p := range r[0].Pools {
			n += len(p.PEs)
		}
		if n != tc.want || r[0].More {
			t.Fatalf("own-only=%v: %d PEs (more=%v), want %d", tc.own, n, r[0].More, tc.want)
		}
	}
}

func TestStaleHandleUpdateDeleteIgnored(t *testing.T) {
	c, _ := newTestCore(t, 1)
	hello(c, 2, 2)
	hello(c, 3, 3)
	pe := testPE(5)
	pe.Home = 3
	c.Step(3, netip.Addr{}, HandleUpdate{Header: Header{Sender: 3, Receiver: 1}, Handle: "a", PE: pe})
	// 2 deletes the PE claiming it was its own: the PE has moved to 3 since.
	old := pe
	old.Home = 2
	c.Step(2, netip.Addr{}, HandleUpdate{Header: Header{Sender: 2, Receiver: 1}, Action: DelPE, Handle: "a", PE: old})
	if c.Count() != 1 {
		t.Fatal("stale delete removed a PE owned by another registrar")
	}
	c.Step(3, netip.Addr{}, HandleUpdate{Header: Header{Sender: 3, Receiver: 1}, Action: DelPE, Handle: "a", PE: pe})
	if c.Count() != 0 {
		t.Fatal("owner's delete ignored")
	}
}

func TestSilentPeerIsProbedThenTakenOver(t *testing.T) {
	c, now, pe := coreWithPeersPE(t)
	cfg := c.Config()
	// Only 2 keeps talking.
	var probed, initiated bool
	for tm := now; tm.Before(now.Add(cfg.PeerMaxTimeLastHeard + cfg.PeerMaxTimeNoResponse + 50*time.Millisecond)); tm = tm.Add(10 * time.Millisecond) {
		c.Tick(tm)
		outs := c.Drain()
		hello(c, 2, 2)
		for _, o := range outs {
			if p, ok := o.Msg.(Presence); ok && p.Reply && o.Peer == 3 {
				probed = true
			}
			if it, ok := o.Msg.(InitTakeover); ok && it.Target == 3 && o.Peer == 2 {
				initiated = true
			}
		}
	}
	if !probed || !initiated || c.peers[3] == nil || c.peers[3].takeover == nil {
		t.Fatalf("silent peer: probed=%v, init takeover sent=%v; want both and a takeover in progress", probed, initiated)
	}
	// 2 never acks: the takeover completes at expiry, adopting the PE with
	// a home-flag keep-alive sent to its ASAP address.
	c.Tick(now.Add(time.Second)) // past the takeover expiry, within the PE's lifetime
	outs := c.Drain()
	ka := msgsOf[EndpointKeepAlive](outs)
	if len(ka) != 1 || !ka[0].Home || ka[0].PEID != 5 {
		t.Fatalf("keep-alives %+v, want one with the home flag", ka)
	}
	for _, o := range outs {
		if _, ok := o.Msg.(EndpointKeepAlive); ok && o.Dial != pe.ASAP {
			t.Fatalf("keep-alive dials %v, want the PE's ASAP address %v", o.Dial, pe.ASAP)
		}
	}
	if got, _ := c.lookup("a", 5); got.Home != 1 {
		t.Fatalf("PE home %d after takeover, want 1", got.Home)
	}
	if len(msgsOf[TakeoverServer](outs)) != 1 {
		t.Fatal("no Takeover Server sent")
	}
}

func TestRestartWithSameIDAdoptsItsPEs(t *testing.T) {
	c, _ := newTestCore(t, 1)
	hello(c, 2, 2)
	pe := testPE(5)
	pe.Home = 1 // a peer still lists us as home (we restarted)
	c.Step(2, netip.Addr{}, HandleTableResponse{Header: Header{Sender: 2, Receiver: 1}})
	c.requestTable(c.peers[2], false)
	c.Drain()
	c.Step(2, netip.Addr{}, HandleTableResponse{Header: Header{Sender: 2, Receiver: 1}, Pools: []Pool{{Handle: "a", PEs: []PoolElement{pe}}}})
	ka := msgsOf[EndpointKeepAlive](c.Drain())
	if len(ka) != 1 || !ka[0].Home {
		t.Fatalf("keep-alives %+v, want a home-flag keep-alive to our PE", ka)
	}
	if c.owned[peKey{"a", 5}] == nil {
		t.Fatal("PE not adopted")
	}
}

func TestPresenceReplyRequired(t *testing.T) {
	c, _ := newTestCore(t, 1)
	hello(c, 2, 2)
	c.Step(2, netip.Addr{}, Presence{Header: Header{Sender: 2, Receiver: 1}, Reply: true, Checksum: 0xffff})
	p := msgsOf[Presence](c.Drain())
	if len(p) != 1 || p[0].Reply || p[0].Receiver != 2 || p[0].Info.ID != 1 {
		t.Fatalf("answer %+v", p)
	}
}

func TestAbandonedHandleTableIsNotContinued(t *testing.T) {
	now := time.Unix(1000, 0)
	cfg := testConfig(1)
	cfg.MaxPEsPerResponse = 2
	c, err := NewCore(cfg, now)
	if err != nil {
		t.Fatal(err)
	}
	c.MarkSynced()
	hello(c, 2, 2)
	for i := uint32(1); i <= 5; i++ {
		c.Step(10, netip.Addr{}, Registration{Handle: "a", PE: testPE(i)})
	}
	c.Drain()
	req := HandleTableRequest{Header: Header{Sender: 2, Receiver: 1}, OwnOnly: true}
	first := func() uint32 {
		c.Step(2, netip.Addr{}, req)
		r := msgsOf[HandleTableResponse](c.Drain())
		return r[0].Pools[0].PEs[0].ID
	}
	if id := first(); id != 1 {
		t.Fatalf("first chunk starts at %d", id)
	}
	if id := first(); id != 3 {
		t.Fatalf("continuation starts at %d, want 3", id)
	}
	c.SetNow(now.Add(cfg.PeerMaxTimeNoResponse)) // the requester gave up
	if id := first(); id != 1 {
		t.Fatalf("a request after the table was abandoned continued it at %d", id)
	}
}

func TestAuditKeepsPEsRegisteredDuringTheTransfer(t *testing.T) {
	c, _ := newTestCore(t, 1)
	hello(c, 2, 2)
	pe := func(id uint32) PoolElement {
		p := testPE(id)
		p.Home = 2
		return p
	}
	c.requestTable(c.peers[2], true)
	c.Drain()
	c.Step(2, netip.Addr{}, HandleTableResponse{Header: Header{Sender: 2, Receiver: 1}, More: true,
		Pools: []Pool{{Handle: "a", PEs: []PoolElement{pe(1)}}}})
	// Registered at 2 after it listed its table, replicated meanwhile.
	c.Step(2, netip.Addr{}, HandleUpdate{Header: Header{Sender: 2, Receiver: 1}, Handle: "a", PE: pe(9)})
	c.Step(2, netip.Addr{}, HandleTableResponse{Header: Header{Sender: 2, Receiver: 1},
		Pools: []Pool{{Handle: "a", PEs: []PoolElement{pe(2)}}}})
	if c.Count() != 3 {
		t.Fatalf("%d PEs after the audit, want 3 (the one replicated during the transfer kept)", c.Count())
	}
}

// A dump tool (rspxdp status) asks for the table under a server ID nobody
// knows: it is answered on its link in chunks, but never becomes a peer —
// so it is not later declared dead and "taken over" among the registrars.
func TestHandleTableRequestFromObserver(t *testing.T) {
	cfg := testConfig(1)
	cfg.MaxPEsPerResponse = 2
	now := time.Unix(1000, 0)
	c, err := NewCore(cfg, now)
	if err != nil {
		t.Fatal(err)
	}
	c.MarkSynced()
	hello(c, 2, 2)
	for i := uint32(1); i <= 3; i++ {
		pe := testPE(i)
		pe.Home = 2
		c.Step(2, netip.Addr{}, HandleUpdate{Header: Header{Sender: 2, Receiver: 1}, Handle: "a", PE: pe})
	}
	c.Drain()
	got := 0
	for more := true; more; {
		c.Step(9, netip.Addr{}, HandleTableRequest{Header: Header{Sender: 0x5eed, Receiver: 1}})
		outs := c.Drain()
		rs := msgsOf[HandleTableResponse](outs)
		if len(rs) != 1 || outs[0].Link != 9 {
			t.Fatalf("observer request answered with %+v", outs)
		}
		for _, p := range rs[0].Pools {
			got += len(p.PEs)
		}
		more = rs[0].More
	}
	if got != 3 {
		t.Fatalf("observer got %d PEs, want 3", got)
	}
	for _, id := range c.Peers() {
		if id == 0x5eed {
			t.Fatal("observer became a peer")
		}
	}
	for i := 0; i < 50; i++ {
		now = now.Add(100 * time.Millisecond)
		c.Tick(now)
		for _, o := range c.Drain() {
			if m, ok := o.Msg.(InitTakeover); ok && m.Target == 0x5eed {
				t.Fatal("registrar started a takeover of the observer")
			}
		}
	}
}
