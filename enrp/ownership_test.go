package enrp

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/selector/policy"
	"github.com/rspxdp/rspxdp/wire"
)

// deliver passes the outputs addressed to peer to through the codec, as
// the wire would, on link 1.
func deliver(t *testing.T, outs []Output, to *Core) {
	t.Helper()
	for _, o := range outs {
		if o.Peer != to.ID() {
			continue
		}
		b, err := Encode(o.Msg)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Decode(wire.ENRP, b)
		if err != nil {
			t.Fatal(err)
		}
		to.Step(1, netip.Addr{}, m)
	}
}

// slowConfig has peer timers longer than the 7 s stall of the tests, so
// nobody takes the stalled registrar over, and a 3 s stall threshold.
func slowConfig(id uint32) Config {
	cfg := testConfig(id)
	cfg.PeerHeartbeatCycle = time.Second
	cfg.PeerMaxTimeLastHeard = 3 * time.Second
	cfg.PeerMaxTimeNoResponse = 6 * time.Second
	cfg.KeepAliveInterval, cfg.KeepAliveTimeout = time.Second, time.Second
	return cfg
}

// pair returns two cores that know each other as peers (link 1 at each).
func pair(t *testing.T) (c1, c2 *Core, now time.Time) {
	now = time.Unix(1000, 0)
	mk := func(id uint32) *Core {
		c, err := NewCore(slowConfig(id), now)
		if err != nil {
			t.Fatal(err)
		}
		c.MarkSynced()
		return c
	}
	c1, c2 = mk(1), mk(2)
	hello(c1, 1, 2)
	hello(c2, 1, 1)
	return c1, c2, now
}

// run ticks c every 500 ms from from to until, collecting its outputs.
func run(c *Core, from, until time.Time) []Output {
	var outs []Output
	for t := from; !t.After(until); t = t.Add(500 * time.Millisecond) {
		c.Tick(t)
		outs = append(outs, c.Drain()...)
	}
	return outs
}

func register(c *Core, link LinkID, handle string, pe PoolElement) []Output {
	c.Step(link, netip.MustParseAddr("10.0.0.1"), Registration{Handle: handle, PE: pe})
	return c.Drain()
}

func homeOf(t *testing.T, c *Core, handle string, id uint32) uint32 {
	t.Helper()
	el, ok := c.hs.Lookup(handle, id)
	if !ok {
		t.Fatalf("registrar %d: PE %d of %q missing", c.ID(), id, handle)
	}
	return el.Home
}

// A PE that moved while its first home was stalled has one owner
// everywhere once the two exchange updates, in either order: the newer
// claim (issue 19 item 6, issue 15 item 7).
func TestNewerClaimWins(t *testing.T) {
	for _, order := range []string{"old home hears first", "new home hears first"} {
		t.Run(order, func(t *testing.T) {
			c1, c2, now := pair(t)
			pe := testPE(5)
			register(c1, 10, "echo", pe) // c1 claims at now
			// c1 stalls for 7 s; the PE registers at c2 after 5 s.
			queued := run(c2, now, now.Add(5*time.Second))
			out2 := register(c2, 11, "echo", pe)
			queued = append(queued, run(c2, now.Add(5500*time.Millisecond), now.Add(6500*time.Millisecond))...)
			// c1 wakes and its re-registration from the queue is processed.
			c1.SetNow(now.Add(7 * time.Second))
			out1 := append(c1.Drain(), register(c1, 10, "echo", pe)...)
			if order == "old home hears first" {
				deliver(t, append(out2, queued...), c1)
				out1 = append(out1, c1.Drain()...)
				deliver(t, out1, c2)
			} else {
				deliver(t, out1, c2)
				deliver(t, append(out2, queued...), c1)
			}
			for i := 0; i < 3; i++ { // re-assertions, table transfers
				o1, o2 := c1.Drain(), c2.Drain()
				deliver(t, o1, c2)
				deliver(t, o2, c1)
			}
			for _, c := range []*Core{c1, c2} {
				if h := homeOf(t, c, "echo", 5); h != 2 {
					t.Fatalf("registrar %d says home %d, want 2 (the newer claim)", c.ID(), h)
				}
			}
			if c1.owned[peKey{"echo", 5}] != nil || c2.owned[peKey{"echo", 5}] == nil {
				t.Fatal("ownership not settled on the newer claim")
			}
			if c1.Counters().OwnershipYielded != 1 {
				t.Fatalf("yielded %d", c1.Counters().OwnershipYielded)
			}
		})
	}
}

// After a stall a registrar gives its peers a fresh hearing, restarts its
// keep-alive timeouts, asks every peer for the PEs it owns, and ignores a
// registration that queued meanwhile for a PE a peer has claimed since.
func TestStallRecovery(t *testing.T) {
	c1, c2, now := pair(t)
	register(c1, 10, "echo", testPE(5))
	// c1 sends its keep-alive and then stops for 7 s.
	c1.Tick(now.Add(1100 * time.Millisecond))
	c1.Drain()
	// Meanwhile PE 6 registered at c2.
	run(c2, now, now.Add(3*time.Second))
	out2 := register(c2, 11, "echo", testPE(6))
	woke := now.Add(8 * time.Second)
	c1.SetNow(woke)
	if c1.Counters().Stalls != 1 {
		t.Fatal("stall not noticed")
	}
	reqs := msgsOf[HandleTableRequest](c1.Drain())
	if len(reqs) != 1 || !reqs[0].OwnOnly {
		t.Fatalf("after the stall sent %v, want one own-only Handle Table Request", reqs)
	}
	// A registration of PE 6 queued during the stall: PE 6 is c2's now.
	deliver(t, out2, c1)
	c1.Drain()
	register(c1, 12, "echo", testPE(6))
	if c1.owned[peKey{"echo", 6}] != nil || homeOf(t, c1, "echo", 6) != 2 {
		t.Fatal("a registration from before the stall took a PE a peer owns")
	}
	if c1.Counters().StaleRegistrations != 1 {
		t.Fatalf("StaleRegistrations = %d", c1.Counters().StaleRegistrations)
	}
	// The timers run: no peer is declared dead and PE 5 is not removed at
	// once for the ack that is still queued.
	c1.Tick(woke)
	c1.Tick(woke.Add(500 * time.Millisecond))
	c1.Drain()
	if p := c1.peers[2]; p == nil || p.dead {
		t.Fatal("the peer was declared dead for our own stall")
	}
	if _, ok := c1.hs.Lookup("echo", 5); !ok {
		t.Fatal("PE removed on a keep-alive timeout that ran while we were stopped")
	}
}

// Two PEs registering a new pool at two registrars at once with different
// policies: every registrar ends with the older registration's policy, the
// other PE is told with cause 5, and the conflict is counted (issue 14
// item 8).
func TestPolicySplitBrainConverges(t *testing.T) {
	c1, c2, now := pair(t)
	lu, wrr := testPE(1), testPE(2)
	lu.Policy, wrr.Policy = policy.LeastUsed(0), policy.WeightedRoundRobin(1)
	out1 := register(c1, 10, "web", lu)
	c2.SetNow(now.Add(time.Millisecond))
	out2 := register(c2, 11, "web", wrr)
	deliver(t, out1, c2)
	deliver(t, out2, c1)
	var told []RegistrationResponse
	o2 := c2.Drain()
	for _, o := range o2 {
		if r, ok := o.Msg.(RegistrationResponse); ok && o.Link == 11 {
			told = append(told, r)
		}
	}
	deliver(t, o2, c1)
	if len(told) != 1 || !told[0].Reject || told[0].Cause != CauseInconsistentPolicy || told[0].PEID != 2 {
		t.Fatalf("the losing PE was told %+v, want a rejection with cause 5", told)
	}
	for _, c := range []*Core{c1, c2} {
		els := c.hs.Elements("web")
		if len(els) != 1 || els[0].ID != 1 || els[0].Policy.Type != policy.TypeLeastUsed {
			t.Fatalf("registrar %d: pool %+v, want only PE 1 with Least Used", c.ID(), els)
		}
	}
	if c1.Counters().PolicyConflicts+c2.Counters().PolicyConflicts == 0 {
		t.Fatal("conflict not counted")
	}
}

// Scheduling delays on a loaded machine are not stalls: with test timers
// of 100 ms, a 600 ms gap starts no recovery.
func TestShortGapIsNoStall(t *testing.T) {
	c, now := newTestCore(t, 1)
	c.SetNow(now.Add(600 * time.Millisecond))
	if n := c.Counters().Stalls; n != 0 {
		t.Fatalf("a 600 ms gap counted as %d stalls", n)
	}
	c.SetNow(now.Add(2 * time.Second))
	if n := c.Counters().Stalls; n != 1 {
		t.Fatalf("a 1.4 s gap with 100 ms heartbeats: %d stalls, want 1", n)
	}
}

// A PE registered with lifetime 0 stays at the peers between its home's
// updates (issue 19 item 8).
func TestZeroLifetimeDoesNotExpireAtPeers(t *testing.T) {
	c1, c2, now := pair(t)
	pe := testPE(5)
	pe.Lifetime = 0
	deliver(t, register(c1, 10, "echo", pe), c2)
	run(c2, now, now.Add(3*time.Second))
	if _, ok := c2.hs.Lookup("echo", 5); !ok {
		t.Fatal("replicated PE with lifetime 0 expired at the peer within 3 s")
	}
}

// The owner identity travels with the PE, so a non-home registrar refuses
// another identity's deregistration and re-registration (issue 19 item 5).
func TestOwnerReplicated(t *testing.T) {
	c1, c2, _ := pair(t)
	pe := testPE(5)
	pe.Owner = "pe/alice"
	deliver(t, register(c1, 10, "echo", pe), c2)
	el, ok := c2.hs.Lookup("echo", 5)
	if !ok || el.Owner != "pe/alice" {
		t.Fatalf("replicated owner %q", el.Owner)
	}
	c2.Step(20, netip.MustParseAddr("10.9.9.9"), Deregistration{Handle: "echo", PEID: 5, Owner: "pu/evil"})
	if r := msgsOf[DeregistrationResponse](c2.Drain()); len(r) != 1 || !r[0].Reject || r[0].Cause != CauseRejectionDueToSecurity {
		t.Fatalf("deregistration by another identity at a non-home registrar: %+v", r)
	}
	evil := testPE(5)
	evil.Owner = "pe/mallory"
	out := register(c2, 21, "echo", evil)
	if r := msgsOf[RegistrationResponse](out); len(r) != 1 || !r[0].Reject || r[0].Cause != CauseRejectionDueToSecurity {
		t.Fatalf("re-registration by another identity at a non-home registrar: %+v", r)
	}
	if _, ok := c2.hs.Lookup("echo", 5); !ok {
		t.Fatal("PE gone")
	}
}

// Keep-alive acks count only on the PE's own association (issue 19 item 5).
func TestForeignKeepAliveAckIgnored(t *testing.T) {
	c, now := newTestCore(t, 1)
	register(c, 10, "echo", testPE(5))
	c.Tick(now.Add(150 * time.Millisecond)) // keep-alive out
	c.Drain()
	c.Step(99, netip.Addr{}, EndpointKeepAliveAck{Handle: "echo", PEID: 5})
	if c.Counters().ForeignAcks != 1 {
		t.Fatal("ack on another association not refused")
	}
	if s := c.owned[peKey{"echo", 5}]; s.link != 10 || !s.awaitingAck {
		t.Fatalf("foreign ack moved the PE's link to %d (awaiting %v)", s.link, s.awaitingAck)
	}
	c.Tick(now.Add(400 * time.Millisecond))
	if _, ok := c.hs.Lookup("echo", 5); ok {
		t.Fatal("a PE kept alive only by someone else's acks stayed listed")
	}
}

// updatesAbout lists the Handle Updates in outs about PE id, as "action
// home->peer" strings.
func updatesAbout(outs []Output, id uint32) []string {
	var r []string
	for _, o := range outs {
		if u, ok := o.Msg.(HandleUpdate); ok && u.PE.ID == id {
			r = append(r, fmt.Sprintf("%v home %d -> %d", u.Action, u.PE.Home, o.Peer))
		}
	}
	return r
}

// A registrar that was stalled tells its peers nothing about its PEs until
// it has re-checked who owns them. An rsplib peer carries no epochs and
// takes any Handle Update for the truth, so a queued re-registration's
// update (home: the stalled registrar) or the delete for the old
// association the PE closed when it moved would take a PE away from its new
// home there (issue 15 item 7, scenario 70: the rspserver PE missing at
// rspregistrar for 1.6 s). What is still ours after the re-check is
// replicated then.
func TestStallHoldsBackUpdates(t *testing.T) {
	c1, c2, now := pair(t)
	hello(c1, 3, 3)                     // an rsplib peer: it only listens here
	register(c1, 10, "echo", testPE(5)) // moves to c2 while c1 is stalled
	register(c1, 11, "echo", testPE(7)) // stays c1's and re-registers
	register(c1, 12, "echo", testPE(8)) // dies while c1 is stalled
	c1.Tick(now.Add(1100 * time.Millisecond))
	c1.Drain()
	run(c2, now, now.Add(5*time.Second))
	moved := register(c2, 13, "echo", testPE(5))
	woke := now.Add(7 * time.Second)
	c1.SetNow(woke)
	c1.Drain()
	// What queued at c1: the re-registrations of 5 and 7 on their old
	// associations, then 5's old association (5 moved on) and 8's abort.
	var out []Output
	out = append(out, register(c1, 10, "echo", testPE(5))...)
	out = append(out, register(c1, 11, "echo", testPE(7))...)
	c1.LinkAborted(10)
	c1.LinkAborted(12)
	out = append(out, c1.Drain()...)
	if ups := updatesAbout(out, 5); len(ups) > 0 {
		t.Errorf("while re-checking ownership after the stall, sent %v about PE 5, which c2 owns now", ups)
	}
	// c2's update arrives; the re-check ends.
	deliver(t, moved, c1)
	out = append(out, c1.Drain()...)
	out = append(out, run(c1, woke.Add(500*time.Millisecond), woke.Add(3*time.Second))...)
	if ups := updatesAbout(out, 5); len(ups) > 0 {
		t.Errorf("after the stall sent %v about PE 5, which c2 owns now", ups)
	}
	if h := homeOf(t, c1, "echo", 5); h != 2 {
		t.Errorf("PE 5 homed at %d, want 2", h)
	}
	// What stayed ours reaches the peers once the re-check is over.
	for _, tc := range []struct {
		id   uint32
		want string
	}{{7, fmt.Sprintf("%v home 1 -> 3", AddPE)}, {8, fmt.Sprintf("%v home 1 -> 3", DelPE)}} {
		if ups := updatesAbout(out, tc.id); !slices.Contains(ups, tc.want) {
			t.Errorf("PE %d: after the stall sent %v, want %q", tc.id, ups, tc.want)
		}
	}
}
