// Package securitytest gives tests a throwaway PKI: a CA and certificates
// for registrars, PEs and PUs, written as the PEM files the command line
// reads, loaded into security.Reloaders.
package securitytest

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/security"
)

// Policy is the tests' authorisation policy: registrars peer and resolve
// anything, PEs register pool "echo" from 10/8 and 127/8, PUs resolve "echo".
const Policy = `version: 1
rules:
  - identity: "rspxdp://registrar/*"
    peer: true
    resolve: ["*"]
  - identity: "rspxdp://pe/*"
    register: ["echo"]
    networks: ["10.0.0.0/8", "127.0.0.0/8"]
  - identity: "rspxdp://pu/*"
    resolve: ["echo"]
`

// PolicyFile writes Policy into Dir and opens it.
func (p *PKI) PolicyFile(t testing.TB) *security.PolicyFile {
	t.Helper()
	pf, err := security.OpenPolicyFile(p.WriteFile(t, "policy.yaml", Policy))
	if err != nil {
		t.Fatal(err)
	}
	return pf
}

// PKI is a test CA whose files live in a test's temporary directory.
type PKI struct {
	// Dir holds ca.pem and every issued ROLE-NAME.pem / ROLE-NAME-key.pem.
	Dir string
	CA  *security.CA
}

// New makes a CA and writes Dir/ca.pem.
func New(t testing.TB) *PKI {
	t.Helper()
	ca, err := security.NewCA("rspxdp test CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p := &PKI{Dir: t.TempDir(), CA: ca}
	p.write(t, "ca.pem", security.CertPEM(ca.Cert))
	return p
}

func (p *PKI) write(t testing.TB, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(p.Dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// WriteFile writes a file (a policy, say) into Dir and returns its path.
func (p *PKI) WriteFile(t testing.TB, name, content string) string {
	t.Helper()
	return p.write(t, name, []byte(content))
}

// Reloader issues a certificate for role and name (identity
// rspxdp://ROLE/NAME, valid for 127.0.0.1 too), writes it and its key, and
// loads them with the CA bundle.
func (p *PKI) Reloader(t testing.TB, role security.Role, name string) *security.Reloader {
	t.Helper()
	leaf, err := p.CA.Issue(security.LeafSpec{Role: role, Name: name, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, err := security.KeyPEM(leaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	f := security.Files{
		CA:   filepath.Join(p.Dir, "ca.pem"),
		Cert: p.write(t, string(role)+"-"+name+".pem", security.CertPEM(leaf.Cert)),
		Key:  p.write(t, string(role)+"-"+name+"-key.pem", key),
	}
	r, err := security.NewReloader(f)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
