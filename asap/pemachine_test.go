package asap

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
)

// The registration state machine, fed messages and ticks: no sockets, no
// sleeps.

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	tInterval = 30 * time.Second
	tResp     = 2 * time.Second
)

func newTestMachine(regs ...string) *peMachine {
	pe := msg.PoolElement{ID: 0x42, Lifetime: 3 * tInterval,
		Transport: selector.Transport{Protocol: selector.TCP, Port: 7, Addrs: []netip.Addr{netip.MustParseAddr("0.0.0.0")}},
		ASAP:      netip.MustParseAddrPort("0.0.0.0:4000"), Policy: policy.RoundRobin()}
	return newPEMachine("echo", pe, regs, tInterval, tResp, tResp, t0)
}

// kinds summarises outputs for comparison.
func kinds(outs []peOutput) []string {
	var s []string
	for _, o := range outs {
		switch {
		case o.Dial != "":
			s = append(s, "dial "+o.Dial)
		case o.Close != 0:
			s = append(s, "close")
		case o.Msg != nil:
			switch o.Msg.(type) {
			case msg.Registration:
				s = append(s, "registration")
			case msg.Deregistration:
				s = append(s, "deregistration")
			case msg.EndpointKeepAliveAck:
				s = append(s, "ack")
			default:
				s = append(s, "msg?")
			}
		case o.Event != nil:
			s = append(s, map[peEventKind]string{evRegistered: "registered", evRejected: "rejected",
				evHomeChanged: "home", evDeregistered: "deregistered", evRegistrarLost: "lost"}[o.Event.Kind])
		}
	}
	return s
}

func expect(t *testing.T, what string, outs []peOutput, want ...string) {
	t.Helper()
	if got := kinds(outs); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: outputs %q, want %q", what, got, want)
	}
}

// registered brings a machine to the registered state on link 1 at t0.
func registered(t *testing.T) *peMachine {
	m := newTestMachine("r1:3863", "r2:3863")
	m.start()
	expect(t, "start", m.drain(), "dial r1:3863")
	m.linkUp(1, netip.MustParseAddr("10.0.0.5"))
	outs := m.drain()
	expect(t, "link up", outs, "registration")
	reg := outs[0].Msg.(msg.Registration)
	if reg.PE.Transport.Addrs[0] != netip.MustParseAddr("10.0.0.5") || reg.PE.ASAP.Addr() != netip.MustParseAddr("10.0.0.5") {
		t.Fatalf("unspecified addresses not replaced by the local one: %+v", reg.PE)
	}
	m.step(1, msg.RegistrationResponse{Handle: "echo", PEID: 0x42})
	expect(t, "response", m.drain(), "registered")
	return m
}

func TestMachineReregistersEveryInterval(t *testing.T) {
	m := registered(t)
	if d := m.nextDeadline(); !d.Equal(t0.Add(tInterval)) {
		t.Fatalf("next deadline %v, want interval after start", d)
	}
	m.tick(t0.Add(tInterval - time.Millisecond))
	expect(t, "before interval", m.drain())
	m.tick(t0.Add(tInterval))
	expect(t, "at interval", m.drain(), "registration")
	m.step(1, msg.RegistrationResponse{Handle: "echo", PEID: 0x42})
	expect(t, "re-registered", m.drain(), "registered")
}

func TestMachineKeepAlive(t *testing.T) {
	m := registered(t)
	m.step(1, msg.EndpointKeepAlive{ServerID: 7, Handle: "echo", PEID: 0x42})
	expect(t, "first keep-alive", m.drain(), "ack", "home")
	if m.home != 7 {
		t.Fatalf("home = %d, want 7", m.home)
	}
	m.step(1, msg.EndpointKeepAlive{ServerID: 7, Handle: "echo", PEID: 0x42})
	expect(t, "second keep-alive", m.drain(), "ack")
	m.step(1, msg.EndpointKeepAlive{ServerID: 7, Handle: "other", PEID: 0x42})
	expect(t, "keep-alive for another PE", m.drain())
}

func TestMachineFollowsTakeover(t *testing.T) {
	m := registered(t)
	m.step(1, msg.EndpointKeepAlive{ServerID: 7, Handle: "echo", PEID: 0x42})
	m.drain()
	// Registrar 9 took us over and opened link 5 to our ASAP endpoint.
	m.step(5, msg.EndpointKeepAlive{ServerID: 9, Handle: "echo", PEID: 0x42, Home: true})
	outs := m.drain()
	expect(t, "takeover", outs, "ack", "close", "home", "registration")
	if outs[0].Link != 5 || outs[1].Close != 1 || outs[3].Link != 5 || m.home != 9 {
		t.Fatalf("takeover outputs %+v: want ack and registration on link 5, link 1 closed", outs)
	}
	// The old link closing afterwards changes nothing.
	m.linkDown(1)
	expect(t, "old link down", m.drain())
	m.step(5, msg.RegistrationResponse{Handle: "echo", PEID: 0x42})
	expect(t, "registered with new home", m.drain(), "registered")
}

func TestMachineHomeDies(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill func(m *peMachine)
	}{
		{"connection closes", func(m *peMachine) { m.linkDown(1) }},
		{"re-registration unanswered", func(m *peMachine) {
			m.tick(t0.Add(tInterval))
			expect(t, "re-registration", m.drain(), "registration")
			m.tick(t0.Add(tInterval + tResp))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := registered(t)
			tc.kill(m)
			outs := m.drain()
			if k := kinds(outs); k[len(k)-1] != "dial r2:3863" {
				t.Fatalf("after home death: %q, want a dial of the next registrar", k)
			}
			m.linkUp(2, netip.Addr{})
			expect(t, "new link", m.drain(), "registration")
			m.step(2, msg.RegistrationResponse{Handle: "echo", PEID: 0x42})
			expect(t, "registered again", m.drain(), "registered")
		})
	}
}

func TestMachineDialRetry(t *testing.T) {
	m := newTestMachine("r1:1", "r2:1")
	m.start()
	expect(t, "start", m.drain(), "dial r1:1")
	m.dialFailed("r1:1")
	expect(t, "r1 failed", m.drain(), "lost", "dial r2:1")
	m.dialFailed("r2:1")
	expect(t, "r2 failed", m.drain(), "lost")
	if d := m.nextDeadline(); !d.Equal(t0.Add(tResp)) {
		t.Fatalf("retry at %v, want after the retry pause", d)
	}
	m.tick(t0.Add(tResp))
	expect(t, "retry", m.drain(), "dial r1:1")
}

func TestMachineRejected(t *testing.T) {
	m := newTestMachine("r1:1")
	m.start()
	m.linkUp(1, netip.Addr{})
	m.drain()
	m.step(1, msg.RegistrationResponse{Handle: "echo", PEID: 0x42, Reject: true, Cause: msg.CauseRejectionDueToSecurity})
	outs := m.drain()
	expect(t, "rejected", outs, "rejected")
	if outs[0].Event.Cause != msg.CauseRejectionDueToSecurity {
		t.Fatalf("cause %v", outs[0].Event.Cause)
	}
	m.tick(t0.Add(time.Hour))
	expect(t, "no retry after a refusal", m.drain())
}

func TestMachinePolicyUpdate(t *testing.T) {
	m := registered(t)
	pe := m.pe
	pe.Policy = policy.LeastUsed(1000)
	m.setPolicy(pe)
	if !m.nextDeadline().Equal(t0) {
		t.Fatal("policy change does not make a re-registration due now")
	}
	m.tick(t0)
	outs := m.drain()
	expect(t, "policy update", outs, "registration")
	if p := outs[0].Msg.(msg.Registration).PE.Policy; p != policy.LeastUsed(1000) {
		t.Fatalf("re-registered with %+v", p)
	}
}

func TestMachineDeregister(t *testing.T) {
	m := registered(t)
	m.deregister()
	expect(t, "deregister", m.drain(), "deregistration")
	// Keep-alives during deregistration are still answered, but no
	// takeover is followed.
	m.step(3, msg.EndpointKeepAlive{ServerID: 9, Handle: "echo", PEID: 0x42, Home: true})
	expect(t, "keep-alive while leaving", m.drain(), "ack")
	m.step(1, msg.DeregistrationResponse{Handle: "echo", PEID: 0x42})
	expect(t, "confirmed", m.drain(), "deregistered")
	m.tick(t0.Add(time.Hour))
	expect(t, "nothing after", m.drain())

	m = registered(t)
	m.deregister()
	m.drain()
	m.tick(t0.Add(tResp))
	expect(t, "unconfirmed deregistration gives up", m.drain(), "close", "lost", "deregistered")
}

// A keep-alive from a registrar that is not our home, on another
// connection and without the home flag (one that lost us while it was
// stalled, or that a registration of ours reached late), goes unanswered,
// so it lets go (issue 19 item 6); and the PE re-registers with its home
// at once, at most once per response timeout, so the home's claim is the
// newer one and the other cannot delete it everywhere when it times it
// out (TestLateRegistrationConverges).
func TestMachineAnswersOnlyItsHome(t *testing.T) {
	m := registered(t)
	m.step(1, msg.EndpointKeepAlive{ServerID: 7, Handle: "echo", PEID: 0x42})
	expect(t, "home's keep-alive", m.drain(), "ack", "home")
	m.step(3, msg.EndpointKeepAlive{ServerID: 8, Handle: "echo", PEID: 0x42})
	outs := m.drain()
	expect(t, "a stale registrar's keep-alive", outs, "registration")
	if outs[0].Link != 1 {
		t.Fatalf("re-registration on link %d, want the home's link 1", outs[0].Link)
	}
	m.step(1, msg.RegistrationResponse{Handle: "echo", PEID: 0x42})
	expect(t, "home's answer", m.drain(), "registered")
	m.tick(t0.Add(tResp / 2))
	m.step(3, msg.EndpointKeepAlive{ServerID: 8, Handle: "echo", PEID: 0x42})
	expect(t, "the stale registrar again, within the response timeout", m.drain())
	m.step(1, msg.EndpointKeepAlive{ServerID: 7, Handle: "echo", PEID: 0x42})
	expect(t, "home's keep-alive again", m.drain(), "ack")
	m.tick(t0.Add(tResp))
	m.step(3, msg.EndpointKeepAlive{ServerID: 8, Handle: "echo", PEID: 0x42})
	expect(t, "the stale registrar after the response timeout", m.drain(), "registration")
}
