package enrp

import (
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/selector"
)

// TestAuditBacksOffWhenItCannotConverge: a registrar that refuses some of a
// peer's PEs (here: it is full) can never make its checksum of that peer's
// PEs equal the peer's. It used to ask for the peer's table every other
// heartbeat forever (issue 15 item 5: about 40 requests per pair in 190 s);
// now every audit that does not converge doubles the wait before the next
// (at most maxAuditBackoff cycles), is counted, and once the refusal is
// gone the next audit converges.
func TestAuditBacksOffWhenItCannotConverge(t *testing.T) {
	s := newSim(t)
	full := testConfig(1)
	full.MaxPEs = 2
	a := s.addReg(full)
	b := s.addReg(testConfig(2))
	s.advance(time.Second)
	s.register(1, "p", testPE(10))
	s.register(2, "p", testPE(20))          // fills registrar 1
	extra := s.register(2, "p", testPE(21)) // refused as a replicated PE at 1
	if a.Count() != 2 || b.Count() != 3 {
		t.Fatalf("registrars hold %d and %d PEs, want 2 (full) and 3", a.Count(), b.Count())
	}
	s.sent = map[string]int{}
	const cycles = 200 // 20 s of 100 ms heartbeats
	s.advance(cycles * full.PeerHeartbeatCycle)
	reqs := s.sent["HandleTableRequest"]
	t.Logf("%d handle table requests in %d heartbeat cycles; %d audits did not converge",
		reqs, cycles, a.Counters().AuditsNotConverged)
	// Without back-off: one every other cycle, 100. With it: 2, 4, 8,
	// 16, 32, 32, ... cycles apart.
	if reqs > 12 {
		t.Fatalf("%d handle table requests in %d heartbeat cycles: the audit loops", reqs, cycles)
	}
	if a.Counters().AuditsNotConverged == 0 {
		t.Fatal("no audit counted as not converging")
	}
	// The refused PE leaves: the checksums agree again, and the back-off
	// is over (the log says so once).
	s.peSend(extra, Deregistration{Handle: "p", PEID: 21})
	s.advance(2 * maxAuditBackoff * full.PeerHeartbeatCycle)
	s.agree(t, 2)
	if p := a.peers[2]; p.auditFails != 0 {
		t.Fatalf("audit still backing off (%d failures) after the checksums agree", p.auditFails)
	}
}

// TestAuditBackoffEndsWhenThePeerChanges: the back-off of an audit that
// cannot converge holds only while the peer's PEs stay as they were; a PE
// the peer gains meanwhile (its Handle Update lost in a partition here)
// is audited in within a few heartbeats, as before the back-off existed.
func TestAuditBackoffEndsWhenThePeerChanges(t *testing.T) {
	s := newSim(t)
	a := s.addReg(testConfig(1))
	s.addReg(testConfig(2))
	s.advance(time.Second)
	// Each registrar registers a PE of pool q that the other refuses
	// (inconsistent transport): both audits are stuck from the start.
	s.cut[[2]uint32{1, 2}] = true
	s.register(1, "q", testPE(11))
	udp := testPE(21)
	udp.Transport.Protocol = selector.UDP
	s.register(2, "q", udp)
	delete(s.cut, [2]uint32{1, 2})
	s.advance(maxAuditBackoff * testConfig(1).PeerHeartbeatCycle)
	if a.peers[2].auditFails == 0 {
		t.Fatal("the stuck audit is not backing off")
	}
	// Registrar 2 gains a PE registrar 1 does not hear of.
	s.cut[[2]uint32{1, 2}] = true
	s.register(2, "p", testPE(22))
	delete(s.cut, [2]uint32{1, 2})
	s.advance(6 * testConfig(1).PeerHeartbeatCycle)
	if _, ok := a.lookup("p", 22); !ok {
		t.Fatalf("registrar 1 lacks the peer's new PE 6 heartbeats after the partition (audit back-off %d)", a.peers[2].auditFails)
	}
}
