package security

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testPKI writes a CA and leaves into a temporary directory, the way
// `rspxdp certs` lays them out, and returns the Files for each leaf.
type testPKI struct {
	t   testing.TB
	dir string
	ca  *CA
}

func newTestPKI(t testing.TB, name string) *testPKI {
	t.Helper()
	ca, err := NewCA(name, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "ca.pem"), CertPEM(ca.Cert))
	return &testPKI{t: t, dir: dir, ca: ca}
}

// issue writes role-name.pem and role-name-key.pem (overwriting: the
// reload test rotates a certificate this way) and returns their Files.
func (p *testPKI) issue(role Role, name string) Files {
	p.t.Helper()
	leaf, err := p.ca.Issue(LeafSpec{Role: role, Name: name, IPs: []net.IP{net.ParseIP("127.0.0.1")}}, time.Now())
	if err != nil {
		p.t.Fatal(err)
	}
	key, err := KeyPEM(leaf.Key)
	if err != nil {
		p.t.Fatal(err)
	}
	base := filepath.Join(p.dir, string(role)+"-"+name)
	writeTestFile(p.t, base+".pem", CertPEM(leaf.Cert))
	writeTestFile(p.t, base+"-key.pem", key)
	return Files{CA: filepath.Join(p.dir, "ca.pem"), Cert: base + ".pem", Key: base + "-key.pem"}
}

func writeTestFile(t testing.TB, path string, data []byte) {
	t.Helper()
	// Write then rename, as an operator rotating files should, so a
	// concurrent Reload never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func mustReloader(t testing.TB, f Files) *Reloader {
	t.Helper()
	r, err := NewReloader(f)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
