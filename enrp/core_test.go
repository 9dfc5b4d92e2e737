package enrp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
	"github.com/rspxdp/rspxdp/wire"
)

func regResp(t *testing.T, p *simPE) RegistrationResponse {
	t.Helper()
	r, ok := lastResp(p).(RegistrationResponse)
	if !ok {
		t.Fatalf("last response %#v, want RegistrationResponse", lastResp(p))
	}
	return r
}

func TestRegistrationAcceptedAndReplicated(t *testing.T) {
	s := newSim(t)
	a := s.addReg(testConfig(1))
	b := s.addReg(testConfig(2))
	p := s.register(1, "echo", testPE(10))
	if r := regResp(t, p); r.Reject || r.PEID != 10 || r.Handle != "echo" {
		t.Fatalf("response %+v", r)
	}
	if s.sent["HandleUpdate"] != 1 {
		t.Fatalf("%d handle updates, want 1", s.sent["HandleUpdate"])
	}
	for _, c := range []*Core{a, b} {
		pe, ok := c.lookup("echo", 10)
		if !ok || pe.Home != 1 {
			t.Fatalf("registrar %d: PE %+v found=%v, want home 1", c.ID(), pe, ok)
		}
	}
	s.agree(t, 1)
}

func TestRegistrationRejections(t *testing.T) {
	base := testPE(10)
	wrr := testPE(11)
	wrr.Policy = policy.WeightedRoundRobin(5)
	udp := testPE(12)
	udp.Transport.Protocol = selector.UDP
	thief := testPE(13)
	thief.ID = 10 // base's identifier, different transport
	noAddr := testPE(14)
	noAddr.Transport.Addrs = nil
	zeroID := testPE(15)
	zeroID.ID = 0
	for _, tc := range []struct {
		name   string
		handle string
		pe     PoolElement
		cfg    func(*Config)
		want   Cause
		// param is the parameter the cause must carry (RFC 5354,
		// 3.3.10; Wireshark marks causes 3, 5 and 7 without one
		// malformed), 0 for none.
		param wire.ParamType
	}{
		{"handle not allowed", "other", testPE(20), func(c *Config) { c.Allow = &AllowList{Handles: []string{"echo"}} }, CauseRejectionDueToSecurity, 0},
		{"source not allowed", "echo", testPE(20), func(c *Config) {
			c.Allow = &AllowList{Networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
		}, CauseRejectionDueToSecurity, 0},
		{"inconsistent policy", "echo", wrr, nil, CauseInconsistentPolicy, wire.ParamPolicy},
		{"inconsistent transport", "echo", udp, nil, CauseInconsistentTransport, wire.ParamUDPTransport},
		{"non-unique identifier", "echo", thief, nil, CauseNonUniquePEIdentifier, 0},
		{"no user transport", "echo", noAddr, nil, CauseInvalidValues, wire.ParamPoolElement},
		{"zero identifier", "echo", zeroID, nil, CauseInvalidValues, wire.ParamPoolElement},
		{"empty handle", "", testPE(20), nil, CauseInvalidValues, wire.ParamPoolHandle},
		{"handlespace full", "echo", testPE(20), func(c *Config) { c.MaxPEs = 1 }, CauseLackOfResources, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t)
			cfg := testConfig(1)
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			c := s.addReg(cfg)
			if tc.want != CauseRejectionDueToSecurity {
				if r := regResp(t, s.register(1, "echo", base)); r.Reject {
					t.Fatalf("base registration rejected: %+v", r)
				}
			}
			r := regResp(t, s.register(1, tc.handle, tc.pe))
			if !r.Reject || r.Cause != tc.want {
				t.Fatalf("response %+v, want reject with %v", r, tc.want)
			}
			if tc.want != CauseRejectionDueToSecurity && c.Count() != 1 {
				t.Fatalf("%d PEs after rejection, want 1", c.Count())
			}
			checkCauseParam(t, r, tc.param)
		})
	}
}

func TestReregistrationRefreshesPolicy(t *testing.T) {
	s := newSim(t)
	c := s.addReg(testConfig(1))
	pe := testPE(10)
	pe.Policy = policy.WeightedRoundRobin(1)
	p := s.register(1, "echo", pe)
	pe.Policy = policy.WeightedRoundRobin(7)
	pe.Lifetime = 60 * time.Second
	s.peSend(p, Registration{Handle: "echo", PE: pe})
	if r := regResp(t, p); r.Reject {
		t.Fatalf("re-registration rejected: %+v", r)
	}
	got, _ := c.lookup("echo", 10)
	if got.Policy.Weight != 7 || got.Lifetime != 60*time.Second || c.Count() != 1 {
		t.Fatalf("after re-registration: %+v, count %d", got, c.Count())
	}
}

func TestDeregistration(t *testing.T) {
	s := newSim(t)
	a := s.addReg(testConfig(1))
	b := s.addReg(testConfig(2))
	p := s.register(1, "echo", testPE(10))
	q := s.register(1, "echo", testPE(11))

	// q, on its own link, tries to remove p: refused.
	s.peSend(q, Deregistration{Handle: "echo", PEID: 10})
	if r := lastResp(q).(DeregistrationResponse); !r.Reject || r.Cause != CauseRejectionDueToSecurity {
		t.Fatalf("spoofed deregistration: %+v", r)
	}
	s.peSend(p, Deregistration{Handle: "nope", PEID: 10})
	if r := lastResp(p).(DeregistrationResponse); !r.Reject || r.Cause != CauseUnknownPoolHandle {
		t.Fatalf("unknown pool: %+v", r)
	}
	s.peSend(p, Deregistration{Handle: "echo", PEID: 10})
	if r := lastResp(p).(DeregistrationResponse); r.Reject {
		t.Fatalf("deregistration rejected: %+v", r)
	}
	for _, c := range []*Core{a, b} {
		if _, ok := c.lookup("echo", 10); ok || c.Count() != 1 {
			t.Fatalf("registrar %d still resolves the PE (count %d)", c.ID(), c.Count())
		}
	}
	s.agree(t, 1)
}

func TestDeregisteredPEDrainsInSteeringSet(t *testing.T) {
	s := newSim(t)
	cfg := testConfig(1)
	cfg.DrainTimeout = time.Second
	c := s.addReg(cfg)
	p := s.register(1, "echo", testPE(10))
	s.register(1, "echo", testPE(11))
	s.peSend(p, Deregistration{Handle: "echo", PEID: 10})
	el, ok := c.Handlespace().Lookup("echo", 10)
	if !ok || el.State != selector.Draining {
		t.Fatalf("deregistered PE: %+v found=%v, want draining", el, ok)
	}
	if r := c.Resolve(HandleResolution{Handle: "echo", MaxItems: maxResolutionAll}); len(r.PEs) != 1 || r.PEs[0].ID != 11 {
		t.Fatalf("resolution after deregistration: %+v", r)
	}
}

func TestHandleResolution(t *testing.T) {
	s := newSim(t)
	c := s.addReg(testConfig(1))
	for i := uint32(1); i <= 5; i++ {
		s.register(1, "echo", testPE(i))
	}
	for _, tc := range []struct {
		name   string
		handle string
		items  uint32
		want   int
		cause  Cause
	}{
		{"default three", "echo", 0, 3, 0},
		{"two", "echo", 2, 2, 0},
		{"all", "echo", maxResolutionAll, 5, 0},
		{"more than there are", "echo", 9, 5, 0},
		{"unknown pool", "nope", 0, 0, CauseUnknownPoolHandle},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.Resolve(HandleResolution{Handle: tc.handle, MaxItems: tc.items})
			if len(r.PEs) != tc.want || r.Cause != tc.cause {
				t.Fatalf("got %d PEs cause %v, want %d cause %v", len(r.PEs), r.Cause, tc.want, tc.cause)
			}
		})
	}
	// Round robin moves through the pool.
	seen := map[uint32]bool{}
	for i := 0; i < 5; i++ {
		seen[c.Resolve(HandleResolution{Handle: "echo", MaxItems: 1}).PEs[0].ID] = true
	}
	if len(seen) != 5 {
		t.Fatalf("round robin over 5 resolutions saw %d PEs", len(seen))
	}
}

func TestKeepAliveKeepsLivePEsAndRemovesDeadOnes(t *testing.T) {
	s := newSim(t)
	a := s.addReg(testConfig(1))
	b := s.addReg(testConfig(2))
	live := s.register(1, "echo", testPE(10))
	dead := s.register(1, "echo", testPE(11))
	s.advance(time.Second)
	if live.acks < 8 {
		t.Fatalf("live PE answered %d keep-alives in 1 s at 100 ms", live.acks)
	}
	s.agree(t, 2)
	dead.dead = true
	start := s.now
	for a.Count() == 2 || b.Count() == 2 {
		s.advance(10 * time.Millisecond)
		if s.now.Sub(start) > 300*time.Millisecond {
			t.Fatal("dead PE not removed within interval + timeout")
		}
	}
	if d := s.now.Sub(start); d > 210*time.Millisecond {
		t.Fatalf("dead PE removed after %v, want <= interval+timeout", d)
	}
	s.agree(t, 1)
}

func TestEndpointUnreachableRemovesAfterMaxReports(t *testing.T) {
	s := newSim(t)
	a := s.addReg(testConfig(1))
	b := s.addReg(testConfig(2))
	s.register(1, "echo", testPE(10))
	pu := s.register(1, "echo", testPE(11))
	for i := 0; i < DefaultMaxBadPEReports-1; i++ {
		s.peSend(pu, EndpointUnreachable{Handle: "echo", PEID: 10})
	}
	if a.Count() != 2 {
		t.Fatal("PE removed before the report threshold")
	}
	s.peSend(pu, EndpointUnreachable{Handle: "echo", PEID: 10})
	if a.Count() != 1 || b.Count() != 1 {
		t.Fatalf("after %d reports: counts %d/%d, want 1/1", DefaultMaxBadPEReports, a.Count(), b.Count())
	}
}

func TestMentorSyncInChunks(t *testing.T) {
	s := newSim(t)
	cfg := testConfig(1)
	cfg.MaxPEsPerResponse = 2
	s.addReg(cfg)
	for i := uint32(1); i <= 7; i++ {
		s.register(1, "echo", testPE(i))
	}
	s.register(1, "other", testPE(100))
	c2 := testConfig(2)
	c := s.addReg(c2)
	if c.Count() != 8 {
		t.Fatalf("new registrar synced %d PEs, want 8", c.Count())
	}
	if s.sent["HandleTableResponse"] < 4 {
		t.Fatalf("%d handle table responses for 8 PEs at 2 per response", s.sent["HandleTableResponse"])
	}
	if s.sent["ListRequest"] != 1 || s.sent["ListResponse"] != 1 {
		t.Fatalf("list request/response: %d/%d", s.sent["ListRequest"], s.sent["ListResponse"])
	}
	s.agree(t, 8)
}

func TestAuditRepairsMissedUpdates(t *testing.T) {
	s := newSim(t)
	a := s.addReg(testConfig(1))
	b := s.addReg(testConfig(2))
	s.register(1, "echo", testPE(1))
	s.cut[[2]uint32{1, 2}] = true
	s.register(1, "echo", testPE(2)) // update lost
	s.cut = map[[2]uint32]bool{}
	if b.Count() != 1 {
		t.Fatalf("b has %d PEs before the audit", b.Count())
	}
	s.advance(250 * time.Millisecond) // two heartbeat cycles: two mismatching presences
	if b.Count() != 2 || a.Checksum(1) != b.Checksum(1) {
		t.Fatalf("after audit: b has %d PEs, checksums %#x/%#x", b.Count(), a.Checksum(1), b.Checksum(1))
	}
}

func TestTakeoverOfDeadRegistrar(t *testing.T) {
	s := newSim(t)
	s.addReg(testConfig(1))
	s.addReg(testConfig(2))
	s.addReg(testConfig(3))
	for i := uint32(1); i <= 9; i++ {
		s.register(1+(i%3), "echo", testPE(i))
	}
	s.advance(300 * time.Millisecond)
	s.agree(t, 9)
	s.kill(3)
	s.advance(time.Second)
	s.agree(t, 9)
	for _, id := range s.order {
		if n := s.regs[id].Checksum(3); n != 0xffff {
			t.Fatalf("registrar %d still has PEs owned by the dead one", id)
		}
		if got := s.regs[id].Peers(); len(got) != 1 {
			t.Fatalf("registrar %d peers %v", id, got)
		}
	}
	if s.sent["TakeoverServer"] == 0 || s.sent["InitTakeoverAck"] == 0 {
		t.Fatalf("takeover messages: %v", s.sent)
	}
	// The taken-over PEs were told and re-registered with their new home.
	for _, p := range s.pes {
		home := s.links[s.links[p.home].other].reg
		pe, _ := s.regs[1].lookup("echo", p.pe.ID)
		if home != pe.Home {
			t.Fatalf("PE %d talks to %d but the handlespace says home %d", p.pe.ID, home, pe.Home)
		}
	}
}

func TestCompetingTakeoverLowerIDWins(t *testing.T) {
	now := time.Unix(0, 0)
	mk := func(id uint32) *Core {
		c, err := NewCore(testConfig(id), now)
		if err != nil {
			t.Fatal(err)
		}
		c.MarkSynced()
		return c
	}
	c1, c2 := mk(1), mk(2)
	for _, c := range []*Core{c1, c2} {
		for _, id := range []uint32{1, 2, 3} {
			if id != c.ID() {
				hello(c, LinkID(id), id)
			}
		}
		c.Drain()
		c.startTakeover(c.peers[3])
		c.Drain()
	}
	// 2 receives 1's Init Takeover: lower ID wins, so 2 yields and acks.
	c2.Step(1, netip.Addr{}, InitTakeover{Header: Header{Sender: 1, Receiver: 2}, Target: 3})
	out := c2.Drain()
	if len(out) != 1 {
		t.Fatalf("2 sent %v", out)
	}
	if ack, ok := out[0].Msg.(InitTakeoverAck); !ok || ack.Target != 3 {
		t.Fatalf("2 sent %#v, want Init Takeover Ack", out[0].Msg)
	}
	if c2.peers[3].takeover != nil {
		t.Fatal("2 kept its takeover")
	}
	// 1 receives 2's Init Takeover: it continues and does not ack.
	c1.Step(2, netip.Addr{}, InitTakeover{Header: Header{Sender: 2, Receiver: 1}, Target: 3})
	if out := c1.Drain(); len(out) != 0 || c1.peers[3].takeover == nil {
		t.Fatalf("1 sent %v / dropped its takeover", out)
	}
	// 2's ack completes 1's takeover: Takeover Server goes out.
	c1.Step(2, netip.Addr{}, InitTakeoverAck{Header: Header{Sender: 2, Receiver: 1}, Target: 3})
	var ts bool
	for _, o := range c1.Drain() {
		if m, ok := o.Msg.(TakeoverServer); ok && m.Target == 3 {
			ts = true
		}
	}
	if !ts || c1.peers[3] != nil {
		t.Fatal("takeover not completed after the last ack")
	}
}

func TestInitTakeoverOfOurselvesAnsweredWithPresence(t *testing.T) {
	c, _ := NewCore(testConfig(1), time.Unix(0, 0))
	c.MarkSynced()
	hello(c, 7, 2)
	c.Step(7, netip.Addr{}, InitTakeover{Header: Header{Sender: 2, Receiver: 1}, Target: 1})
	out := c.Drain()
	if len(out) != 1 {
		t.Fatalf("sent %v", out)
	}
	if _, ok := out[0].Msg.(Presence); !ok {
		t.Fatalf("sent %#v, want Presence", out[0].Msg)
	}
}

func TestPartitionHealConverges(t *testing.T) {
	s := newSim(t)
	s.addReg(testConfig(1))
	s.addReg(testConfig(2))
	s.addReg(testConfig(3))
	for i := uint32(1); i <= 12; i++ {
		s.register(1+(i%3), "echo", testPE(i))
	}
	s.advance(300 * time.Millisecond)
	s.agree(t, 12)
	s.cut[[2]uint32{1, 3}] = true
	s.cut[[2]uint32{2, 3}] = true
	s.advance(2 * time.Second)
	if p3, p1 := s.regs[3].Peers(), s.regs[1].Peers(); len(p3) != 0 || len(p1) != 1 {
		t.Fatalf("during the partition 3 sees peers %v and 1 sees %v: no takeover happened", p3, p1)
	}
	s.cut = map[[2]uint32]bool{}
	// Heal: the links stayed open; the heartbeat's probes on them find the
	// other side again.
	s.advance(2 * time.Second)
	s.agree(t, 12)
	for _, p := range s.pes {
		home := s.links[s.links[p.home].other].reg
		for _, id := range s.order {
			if pe, _ := s.regs[id].lookup("echo", p.pe.ID); pe.Home != home {
				t.Fatalf("PE %d is homed at %d but registrar %d says %d", p.pe.ID, home, id, pe.Home)
			}
		}
	}
}

// Every registrar treats a PE alike, so every node's data plane does: a PE
// that deregistered at its home drains at the peers too (its established
// flows stay wherever ECMP sent them), a PE that died is dropped at once
// everywhere. The difference travels in the Handle Update's drain flag.
func TestReplicatedDeletionDrainsDeregisteredAndDropsDead(t *testing.T) {
	s := newSim(t)
	cfgA, cfgB := testConfig(1), testConfig(2)
	cfgA.DrainTimeout, cfgB.DrainTimeout = time.Minute, time.Minute
	a := s.addReg(cfgA)
	b := s.addReg(cfgB)
	leaving := s.register(1, "echo", testPE(10))
	dead := s.register(1, "echo", testPE(11))
	s.register(1, "echo", testPE(12))
	s.advance(300 * time.Millisecond)
	s.agree(t, 3)

	s.peSend(leaving, Deregistration{Handle: "echo", PEID: 10})
	dead.dead = true
	s.advance(300 * time.Millisecond)
	for _, c := range []*Core{a, b} {
		set, ok := c.Handlespace().SteeringSet("echo")
		if !ok {
			t.Fatalf("registrar %d: pool gone", c.ID())
		}
		states := map[uint32]string{}
		for _, m := range set.Members {
			states[m.ID] = m.State.String()
		}
		if states[10] != "draining" {
			t.Errorf("registrar %d: deregistered PE 10 is %q in the steering set, want draining", c.ID(), states[10])
		}
		if _, ok := states[11]; ok {
			t.Errorf("registrar %d: dead PE 11 still in the steering set (%q)", c.ID(), states[11])
		}
		if states[12] != "active" {
			t.Errorf("registrar %d: PE 12 is %q, want active", c.ID(), states[12])
		}
	}
}

func TestCountersCountWhatHappened(t *testing.T) {
	s := newSim(t)
	a := s.addReg(testConfig(1))
	s.addReg(testConfig(2))
	p := s.register(1, "echo", testPE(10))
	s.register(1, "echo", testPE(11))
	dead := s.register(1, "echo", testPE(12))
	s.peSend(p, Registration{Handle: "echo", PE: testPE(10)}) // refresh
	bad := testPE(13)
	bad.Policy.Type = 0x2 // another policy than the pool's: cause 5
	s.peSend(p, Registration{Handle: "echo", PE: bad})
	s.peSend(p, HandleResolution{Handle: "echo"})
	s.peSend(p, HandleResolution{Handle: "nope"})
	s.peSend(p, Deregistration{Handle: "echo", PEID: 10})
	dead.dead = true
	s.advance(500 * time.Millisecond)
	want := Counters{Registrations: 3, Reregistrations: 1, RegistrationsRejected: 1, Deregistrations: 1,
		KeepAliveFailures: 1, Resolutions: 2, ResolutionsFailed: 1}
	want.RejectedByCause[CauseInconsistentPolicy] = 1
	if got := a.Counters(); got != want {
		t.Fatalf("counters\n got %+v\nwant %+v", got, want)
	}
	s.kill(1)
	s.advance(2 * time.Second)
	if got := s.regs[2].Counters(); got.Takeovers != 1 || got.TakeoverAdoptedPEs != 1 {
		t.Fatalf("survivor's takeover counters: %+v, want 1 takeover adopting PE 11", got)
	}
}

// checkCauseParam asserts the wire form of rejection r carries one cause
// whose information is a parameter of type want (or none, for want 0).
func checkCauseParam(t *testing.T, r RegistrationResponse, want wire.ParamType) {
	t.Helper()
	b, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	var w wire.Message
	if err := (&wire.Decoder{}).Decode(wire.ASAP, b, &w); err != nil {
		t.Fatal(err)
	}
	cs := w.Causes()
	if len(cs) != 1 {
		t.Fatalf("%d causes on the wire, want 1", len(cs))
	}
	if want == 0 {
		if len(cs[0].Info) != 0 {
			t.Fatalf("cause 0x%x carries %d bytes, want none", cs[0].Code, len(cs[0].Info))
		}
		return
	}
	var d wire.Decoder
	p, err := d.DecodeParam(cs[0].Info)
	if err != nil {
		t.Fatalf("cause 0x%x information is no parameter: %v", cs[0].Code, err)
	}
	if p.Type.Code() != want.Code() {
		t.Fatalf("cause 0x%x carries parameter 0x%x, want 0x%x", cs[0].Code, p.Type.Code(), want.Code())
	}
}
