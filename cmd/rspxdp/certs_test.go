package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rspxdp/rspxdp/security"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("%s: no certificate PEM block", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCertsIssuesVerifiableLeaves(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	code, out, errs := runCLI(t, "certs", "--out", dir, "--registrar", "reg1,reg2", "--pe", "echo-1", "--pu", "client", "--ip", "127.0.0.1,10.0.0.1")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if !strings.Contains(out, "rspxdp://pe/echo-1") {
		t.Errorf("output does not list the identities: %q", out)
	}
	ca := readCert(t, filepath.Join(dir, "ca.pem"))
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if !ca.IsCA {
		t.Error("ca.pem is not a CA")
	}
	for _, tc := range []struct {
		file    string
		uri     string
		eku     []x509.ExtKeyUsage
		ips     []string
		notEKUs []x509.ExtKeyUsage
	}{
		{"registrar-reg1", "rspxdp://registrar/reg1", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, []string{"127.0.0.1", "10.0.0.1"}, nil},
		{"registrar-reg2", "rspxdp://registrar/reg2", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, []string{"127.0.0.1", "10.0.0.1"}, nil},
		{"pe-echo-1", "rspxdp://pe/echo-1", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil},
		{"pu-client", "rspxdp://pu/client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c := readCert(t, filepath.Join(dir, tc.file+".pem"))
			if c.PublicKeyAlgorithm != x509.ECDSA {
				t.Errorf("key algorithm %v, want ECDSA", c.PublicKeyAlgorithm)
			}
			if id := security.CertIdentity(c); len(id) == 0 || id[0] != tc.uri {
				t.Errorf("identity %v, want %s first", id, tc.uri)
			}
			for _, e := range tc.eku {
				if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{e}}); err != nil {
					t.Errorf("verify for EKU %v: %v", e, err)
				}
			}
			for _, e := range tc.notEKUs {
				if slices.Contains(c.ExtKeyUsage, e) {
					t.Errorf("has EKU %v", e)
				}
			}
			for _, ip := range tc.ips {
				if err := c.VerifyHostname(ip); err != nil {
					t.Errorf("not valid for %s: %v", ip, err)
				}
			}
			if len(tc.ips) == 0 && len(c.IPAddresses) != 0 {
				t.Errorf("unexpected IP SANs %v", c.IPAddresses)
			}
			keyPath := filepath.Join(dir, tc.file+"-key.pem")
			st, err := os.Stat(keyPath)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("key mode %v, want 0600", st.Mode().Perm())
			}
			if _, err := tls.LoadX509KeyPair(filepath.Join(dir, tc.file+".pem"), keyPath); err != nil {
				t.Errorf("key does not match certificate: %v", err)
			}
		})
	}
	if st, err := os.Stat(filepath.Join(dir, "ca-key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("ca-key.pem: %v %v", st, err)
	}
	// The files feed the security package's configs as they are.
	if _, err := security.NewReloader(security.Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "pe-echo-1.pem"), Key: filepath.Join(dir, "pe-echo-1-key.pem")}); err != nil {
		t.Errorf("reloader on written files: %v", err)
	}
}

func TestCertsRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	if code, _, errs := runCLI(t, "certs", "--out", dir, "--pe", "a"); code != 0 {
		t.Fatalf("first run: %d %s", code, errs)
	}
	before := readCert(t, filepath.Join(dir, "pe-a.pem"))
	// A second run naming other leaves still needs a CA: refused too,
	// and nothing is written (pe-b must not appear).
	code, _, errs := runCLI(t, "certs", "--out", dir, "--pe", "b")
	if code != 1 || !strings.Contains(errs, "exists; use --force") {
		t.Fatalf("second run: code %d stderr %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "pe-b.pem")); err == nil {
		t.Error("refused run wrote pe-b.pem")
	}
	if c := readCert(t, filepath.Join(dir, "pe-a.pem")); !c.Equal(before) {
		t.Error("refused run changed pe-a.pem")
	}
	// --force replaces, and resets a loosened key mode.
	if err := os.Chmod(filepath.Join(dir, "pe-a-key.pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCLI(t, "certs", "--out", dir, "--pe", "a", "--force"); code != 0 {
		t.Fatalf("forced run: %d %s", code, errs)
	}
	if c := readCert(t, filepath.Join(dir, "pe-a.pem")); c.Equal(before) {
		t.Error("--force did not replace pe-a.pem")
	}
	if st, _ := os.Stat(filepath.Join(dir, "pe-a-key.pem")); st.Mode().Perm() != 0o600 {
		t.Errorf("forced key mode %v", st.Mode().Perm())
	}
}

func TestCertsUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
		err  string
	}{
		{[]string{"certs", "--help"}, 0, "Examples:", ""},
		{[]string{"certs", "--pe", "a"}, 2, "", "--out DIR is required"},
		{[]string{"certs", "--out", "x"}, 2, "", "nothing to issue"},
		{[]string{"certs", "--out", "x", "--pe", "../etc"}, 2, "", "names are"},
		{[]string{"certs", "--out", "x", "--pe", "a", "--pe", "a"}, 2, "", "given twice"},
		{[]string{"certs", "--out", "x", "--registrar", "r", "--ip", "nope"}, 2, "", "not an IP address"},
		{[]string{"certs", "--out", "x", "--pe", "a", "extra"}, 2, "", "unexpected argument"},
	} {
		code, out, errs := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errs, tc.err) {
			t.Errorf("%v: code %d stdout %q stderr %q", tc.args, code, out, errs)
		}
	}
}
