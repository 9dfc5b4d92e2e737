package enrp

import (
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/security"
	"github.com/rspxdp/rspxdp/security/securitytest"
)

// With TLS, a PE's owner is checked at every registrar, not only at its
// home (issue 19 item 5): the identity travels with the PE in ENRP, so a
// non-home registrar refuses another identity's deregistration and its
// registration of the same PE identifier.
func TestOwnerCheckedAtNonHomeRegistrar(t *testing.T) {
	p := securitytest.New(t)
	start := func(id uint32, name string, peers ...string) *node {
		cfg := itConfig(id)
		cfg.Transport = "tcp"
		cfg.KeepAliveInterval, cfg.KeepAliveTimeout = time.Minute, time.Minute
		cfg.Peers = peers
		cfg.Security = &Security{TLS: p.Reloader(t, security.RoleRegistrar, name), Policy: p.PolicyFile(t)}
		return startNode(t, cfg)
	}
	r1 := start(1, "r1")
	r2 := start(2, "r2", r1.srv.ENRPAddr().String())
	if _, err := eventually(5*time.Second, func() bool { return len(r1.srv.Peers()) == 1 && len(r2.srv.Peers()) == 1 }); err != nil {
		t.Fatal("TLS registrars did not peer")
	}
	alice := mustTLSClient(t, p, security.RolePE, "alice", r1.srv.ASAPAddr().String())
	if r, ok := callT(t, alice, Registration{Handle: "echo", PE: testPE(1)}).(RegistrationResponse); !ok || r.Reject {
		t.Fatalf("owner's registration: %+v", r)
	}
	if _, err := eventually(5*time.Second, func() bool { return r2.srv.Count() == 1 }); err != nil {
		t.Fatal("PE not replicated")
	}
	evil := mustTLSClient(t, p, security.RolePU, "client", r2.srv.ASAPAddr().String())
	if r, ok := callT(t, evil, Deregistration{Handle: "echo", PEID: 1}).(DeregistrationResponse); !ok || !r.Reject || r.Cause != CauseRejectionDueToSecurity {
		t.Fatalf("another identity's deregistration at the non-home registrar: %+v, want cause 0xa", r)
	}
	mallory := mustTLSClient(t, p, security.RolePE, "mallory", r2.srv.ASAPAddr().String())
	if r, ok := callT(t, mallory, Registration{Handle: "echo", PE: testPE(1)}).(RegistrationResponse); !ok || !r.Reject || r.Cause != CauseRejectionDueToSecurity {
		t.Fatalf("another identity's registration of the PE id at the non-home registrar: %+v, want cause 0xa", r)
	}
	time.Sleep(200 * time.Millisecond)
	for _, n := range []*node{r1, r2} {
		if n.srv.Count() != 1 {
			t.Fatalf("registrar %d holds %d PEs after the attempts, want 1", n.srv.ID(), n.srv.Count())
		}
		snap := n.srv.Snapshot()
		if len(snap) != 1 || snap[0].PEs[0].Home != 1 || snap[0].PEs[0].Owner == "" {
			t.Fatalf("registrar %d: %+v, want PE 1 homed at 1 with its owner", n.srv.ID(), snap)
		}
	}
}
