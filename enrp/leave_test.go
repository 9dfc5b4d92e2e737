package enrp

import (
	"net/netip"
	"testing"
	"time"
)

// TestLeaveHandsPEsOverAtOnce: a leaving registrar's PEs are taken over
// by a peer without the clock moving (no peer timer involved), the leaver
// says nothing after its leaving Presence, and a restart with the same ID
// resynchronises from a mentor.
func TestLeaveHandsPEsOverAtOnce(t *testing.T) {
	s := newSim(t)
	s.addReg(testConfig(1))
	s.addReg(testConfig(2))
	leaver := s.addReg(testConfig(3))
	for i := uint32(1); i <= 9; i++ {
		s.register(1+(i%3), "echo", testPE(i))
	}
	s.advance(300 * time.Millisecond)
	s.agree(t, 9)
	if n := len(leaver.owned); n != 3 {
		t.Fatalf("registrar 3 owns %d PEs, want 3", n)
	}

	var fromLeaver []Message
	s.tap = func(from, _ string, m Message) {
		if from == "3" {
			fromLeaver = append(fromLeaver, m)
		}
	}
	leaver.Leave()
	s.pump() // the whole exchange, at the same instant
	s.tap = nil

	if !leaver.HandedOver() {
		t.Fatal("leaver was not told its PEs were taken over")
	}
	for _, m := range fromLeaver {
		if p, ok := m.(Presence); !ok || !p.Leaving {
			t.Fatalf("leaver sent %#v after Leave; want only Presences with the Leaving flag", m)
		}
	}
	if len(fromLeaver) != 2 {
		t.Fatalf("leaver sent %d messages, want one leaving Presence per peer", len(fromLeaver))
	}
	for _, id := range []uint32{1, 2} {
		c := s.regs[id]
		if c.Checksum(3) != 0xffff || c.Count() != 9 {
			t.Fatalf("registrar %d: %d PEs, checksum of 3's PEs %#x; want 9 and none left to 3", id, c.Count(), c.Checksum(3))
		}
		if p := c.Peers(); len(p) != 1 {
			t.Fatalf("registrar %d peers %v, want only the other survivor", id, p)
		}
	}
	for _, p := range s.pes {
		home := s.links[s.links[p.home].other].reg
		if home != 1 && home != 2 {
			t.Fatalf("PE %d still talks to registrar %d", p.pe.ID, home)
		}
		if pe, _ := s.regs[1].lookup("echo", p.pe.ID); pe.Home != home {
			t.Fatalf("PE %d talks to %d but the handlespace says home %d", p.pe.ID, home, pe.Home)
		}
	}
	if s.sent["InitTakeover"] == 0 || s.sent["TakeoverServer"] == 0 {
		t.Fatalf("no RFC takeover exchange: %v", s.sent)
	}

	// The leaver closes; nothing changes for the survivors.
	s.kill(3)
	s.advance(time.Second)
	s.agree(t, 9)

	// A restart with the same ID is a new peer and syncs from a mentor.
	s.addReg(testConfig(3))
	s.advance(500 * time.Millisecond)
	s.agree(t, 9)
	if p := s.regs[3].Peers(); len(p) != 2 {
		t.Fatalf("restarted registrar peers %v, want both survivors", p)
	}
}

// TestLeavingCoreIsQuiet: after Leave the core sends no Presence, announce
// or keep-alive and replicates nothing, answers resolutions, and notes the
// Takeover Server that names it.
func TestLeavingCoreIsQuiet(t *testing.T) {
	c, now := newTestCore(t, 1)
	c.Announce = true
	hello(c, 2, 2)
	c.Step(9, netip.MustParseAddr("127.0.0.1"), Registration{Handle: "a", PE: testPE(5)})
	c.Drain()

	c.Leave()
	outs := c.Drain()
	if p := msgsOf[Presence](outs); len(p) != 1 || !p[0].Leaving || p[0].Receiver != 2 || len(outs) != 1 {
		t.Fatalf("Leave sent %+v, want one leaving Presence to peer 2", outs)
	}
	if c.HandedOver() {
		t.Fatal("handed over before any peer took over")
	}
	for tm := now; tm.Before(now.Add(time.Minute)); tm = tm.Add(50 * time.Millisecond) {
		c.Tick(tm)
	}
	if outs := c.Drain(); len(outs) != 0 {
		t.Fatalf("leaving core sent %+v while its clock ran", outs)
	}
	if d := c.NextDeadline().Sub(now.Add(time.Minute)); d < time.Minute {
		t.Fatalf("leaving core wants a tick in %v; it has nothing to time", d)
	}
	for _, m := range []Message{
		Registration{Handle: "a", PE: testPE(6)},
		Deregistration{Handle: "a", PEID: 5},
		Presence{Header: Header{Sender: 2, Receiver: 1}, Reply: true},
		InitTakeover{Header: Header{Sender: 2, Receiver: 1}, Target: 1},
	} {
		c.Step(9, netip.MustParseAddr("127.0.0.1"), m)
		if outs := c.Drain(); len(outs) != 0 {
			t.Fatalf("leaving core answered %s with %+v", msgName(m), outs)
		}
	}
	c.Step(9, netip.Addr{}, HandleResolution{Handle: "a"})
	if r := msgsOf[HandleResolutionResponse](c.Drain()); len(r) != 1 || len(r[0].PEs) != 1 {
		t.Fatalf("resolution while leaving: %+v", r)
	}
	c.Step(2, netip.Addr{}, TakeoverServer{Header: Header{Sender: 2, Receiver: 1}, Target: 7})
	if c.HandedOver() {
		t.Fatal("a takeover of another registrar counted as ours")
	}
	c.Step(2, netip.Addr{}, TakeoverServer{Header: Header{Sender: 2, Receiver: 1}, Target: 1})
	if !c.HandedOver() {
		t.Fatal("Takeover Server naming us not noted")
	}
}

// TestLeaveWithNothingToHandOver: no peer or no PE means nothing to wait for.
func TestLeaveWithNothingToHandOver(t *testing.T) {
	for _, tc := range []struct {
		name      string
		peer, reg bool
	}{
		{"no peer, PEs", false, true},
		{"peer, no PEs", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newTestCore(t, 1)
			if tc.peer {
				hello(c, 2, 2)
			}
			if tc.reg {
				c.Step(9, netip.MustParseAddr("127.0.0.1"), Registration{Handle: "a", PE: testPE(5)})
			}
			c.Drain()
			c.Leave()
			if !c.HandedOver() {
				t.Fatal("leave waits for a handover that cannot come")
			}
			if p := msgsOf[Presence](c.Drain()); tc.peer && (len(p) != 1 || !p[0].Leaving) {
				t.Fatalf("peer not told: %+v", p)
			}
		})
	}
}

// TestPeerTakenOverOnlyWhenGoneOrLeaving: a peer is taken over at once when
// it says it leaves; a closed connection alone changes nothing while the
// peer is heard on another (a flap, then a redial), and a peer that stays
// silent is taken over only after max-time-last-heard + max-time-no-response.
func TestPeerTakenOverOnlyWhenGoneOrLeaving(t *testing.T) {
	for _, tc := range []struct {
		name string
		// at the start, on link 3 (peer 3's first link)
		leaving   bool
		closeLink bool
		// peer 3 talks again on link 33 (a redial) every heartbeat
		redial bool
		// want: takeover started, and not before this much time
		wantTakeover bool
		notBefore    func(Config) time.Duration
	}{
		{name: "leaving presence", leaving: true, wantTakeover: true,
			notBefore: func(Config) time.Duration { return 0 }},
		{name: "connection flaps and comes back", closeLink: true, redial: true},
		{name: "connection closes, peer silent", closeLink: true, wantTakeover: true,
			notBefore: func(c Config) time.Duration { return c.PeerMaxTimeLastHeard + c.PeerMaxTimeNoResponse }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, now, _ := coreWithPeersPE(t)
			cfg := c.Config()
			if tc.leaving {
				c.Step(3, netip.Addr{}, Presence{Header: Header{Sender: 3, Receiver: 1}, Leaving: true})
			}
			if tc.closeLink {
				c.LinkDown(3)
			}
			var started time.Duration = -1
			end := 3 * (cfg.PeerMaxTimeLastHeard + cfg.PeerMaxTimeNoResponse)
			for d := time.Duration(0); d <= end && started < 0; d += 10 * time.Millisecond {
				c.Tick(now.Add(d))
				for _, it := range msgsOf[InitTakeover](c.Drain()) {
					if it.Target == 3 {
						started = d
					}
				}
				hello(c, 2, 2)
				if tc.redial && d%cfg.PeerHeartbeatCycle == 0 {
					hello(c, 33, 3)
				}
			}
			switch {
			case !tc.wantTakeover && started >= 0:
				t.Fatalf("live peer taken over %v after its connection closed", started)
			case tc.wantTakeover && started < 0:
				t.Fatal("peer never taken over")
			case tc.wantTakeover && started < tc.notBefore(cfg):
				t.Fatalf("takeover after %v, before the RFC timers (%v) ran out", started, tc.notBefore(cfg))
			}
			if !tc.wantTakeover && c.peers[3].link != 33 {
				t.Fatalf("peer 3 sends on link %d, want the redialled 33", c.peers[3].link)
			}
		})
	}
}

// TestLeavingPresenceFromForgottenPeer: a leaving Presence that arrives after
// another registrar's Takeover Server of the same peer (on another
// connection) starts nothing.
func TestLeavingPresenceFromForgottenPeer(t *testing.T) {
	c, _ := newTestCore(t, 1)
	hello(c, 2, 2)
	hello(c, 3, 3)
	c.Step(2, netip.Addr{}, TakeoverServer{Header: Header{Sender: 2, Receiver: 1}, Target: 3})
	c.Drain()
	c.Step(3, netip.Addr{}, Presence{Header: Header{Sender: 3, Receiver: 1}, Leaving: true})
	if outs := c.Drain(); len(outs) != 0 || c.peers[3] != nil {
		t.Fatalf("late leaving Presence: sent %+v, peer record %+v", outs, c.peers[3])
	}
}

// coreWithPeersPE returns core 1 with live peers 2 and 3 (on links 2 and
// 3) and PE 5 of pool "a", owned by 3.
func coreWithPeersPE(t *testing.T) (*Core, time.Time, PoolElement) {
	t.Helper()
	c, now := newTestCore(t, 1)
	hello(c, 2, 2)
	hello(c, 3, 3)
	pe := testPE(5)
	pe.Home = 3
	c.Step(3, netip.Addr{}, HandleUpdate{Header: Header{Sender: 3, Receiver: 1}, Handle: "a", PE: pe})
	c.Drain()
	return c, now, pe
}
