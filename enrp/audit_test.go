package enrp

import (
	"testing"
	"time"
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
