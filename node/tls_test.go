package node

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rspxdp/rspxdp/security"
	"github.com/rspxdp/rspxdp/security/securitytest"
)

// The YAML's tls section becomes the registrar's Security, with its files
// loaded and its rates applied; a missing file is an error naming it.
func TestRegistrarTLSConfig(t *testing.T) {
	p := securitytest.New(t)
	p.Reloader(t, security.RoleRegistrar, "n1")
	p.PolicyFile(t) // writes policy.yaml
	r := validConfig().Registrar
	r.TLS = TLSConfig{CA: filepath.Join(p.Dir, "ca.pem"), Cert: filepath.Join(p.Dir, "registrar-n1.pem"),
		Key: filepath.Join(p.Dir, "registrar-n1-key.pem"), Policy: filepath.Join(p.Dir, "policy.yaml"), MaxResolutionRate: 50}
	c, err := registrarConfig(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Security == nil || c.Security.TLS == nil || c.Security.Policy == nil || c.Security.Resolutions.Rate != 50 {
		t.Fatalf("security not configured: %+v", c.Security)
	}
	if got := c.Security.TLS.Leaf().URIs[0].String(); got != "rspxdp://registrar/n1" {
		t.Fatalf("certificate %s loaded, want rspxdp://registrar/n1", got)
	}
	n := &Node{secure: c.Security}
	if err := n.reloadSecurity(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if err := os.WriteFile(r.TLS.Policy, []byte("rules: [oops"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.reloadSecurity(); err == nil {
		t.Fatal("reload of a broken policy succeeded")
	}

	r.TLS.Key = filepath.Join(p.Dir, "missing.pem")
	if _, err := registrarConfig(r, nil); err == nil {
		t.Fatal("missing key file accepted")
	}
}
