package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/rspxdp/rspxdp/security"
)

const certsUsage = `Usage: rspxdp certs --out DIR [--registrar NAME ...] [--pe NAME ...] [--pu NAME ...] [flags]

Makes a test certificate authority and leaf certificates for TLS 1.3 with
mutual authentication between registrars, PEs and PUs (ECDSA P-256). For
the demo and tests, not a production PKI: the CA key is written next to
the certificates.

Each NAME gets ROLE-NAME.pem and ROLE-NAME-key.pem in DIR, with the
identity rspxdp://ROLE/NAME as URI SAN (what policy files match) and NAME
as DNS SAN. Registrar certificates also carry the --ip addresses and
--dns names, because PEs and PUs dial registrars by address and check
the certificate against it. DIR gets ca.pem (the bundle every side
trusts) and ca-key.pem. Keys are written mode 0600. Existing files are
never overwritten unless --force is given.

Examples:
  rspxdp certs --out ./pki --registrar reg1 --registrar reg2 --pe echo-1 --pe echo-2 --pu client
  rspxdp certs --out ./pki --registrar reg1,reg2 --ip 10.0.0.1,10.0.0.2 --pe echo-1
  rspxdp certs --out ./pki --force --pe echo-3

Then, e.g.:
  openssl x509 -in ./pki/pe-echo-1.pem -noout -ext subjectAltName`

// certNameRE keeps names usable both as file names and in a URI path.
var certNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func runCerts(ctx context.Context, env *cliEnv, args []string) error {
	fset := newFlagSet(env, "certs", certsUsage)
	out := fset.String("out", "", "directory to write into (created if missing; required)")
	var regs, pes, pus, ips, dnss listFlag
	fset.Var(&regs, "registrar", "registrar NAME (repeatable or comma-separated)")
	fset.Var(&pes, "pe", "pool element NAME (repeatable or comma-separated)")
	fset.Var(&pus, "pu", "pool user NAME (repeatable or comma-separated)")
	fset.Var(&ips, "ip", "IP address SAN for registrar certificates (repeatable; default 127.0.0.1 and ::1)")
	fset.Var(&dnss, "dns", "extra DNS SAN for registrar certificates (repeatable; default localhost)")
	caName := fset.String("ca-name", "rspxdp test CA", "the CA's common name")
	force := fset.Bool("force", false, "overwrite existing files")
	if err := parseFlags(fset, args); err != nil {
		return err
	}
	if fset.NArg() > 0 {
		return usagef("unexpected argument %q", fset.Arg(0))
	}
	if *out == "" {
		return usagef("--out DIR is required")
	}
	if len(regs)+len(pes)+len(pus) == 0 {
		return usagef("nothing to issue: give at least one --registrar, --pe or --pu")
	}
	if len(ips) == 0 {
		ips = listFlag{"127.0.0.1", "::1"}
	}
	if len(dnss) == 0 {
		dnss = listFlag{"localhost"}
	}
	var regIPs []net.IP
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return usagef("--ip %q is not an IP address", s)
		}
		regIPs = append(regIPs, ip)
	}
	var specs []security.LeafSpec
	seen := map[string]bool{}
	for _, g := range []struct {
		role  security.Role
		names []string
	}{{security.RoleRegistrar, regs}, {security.RolePE, pes}, {security.RolePU, pus}} {
		for _, n := range g.names {
			if !certNameRE.MatchString(n) {
				return usagef("--%s %q: names are 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", g.role, n)
			}
			if seen[string(g.role)+"/"+n] {
				return usagef("--%s %q given twice", g.role, n)
			}
			seen[string(g.role)+"/"+n] = true
			s := security.LeafSpec{Role: g.role, Name: n}
			if g.role == security.RoleRegistrar {
				s.IPs, s.DNSNames = regIPs, dnss
			}
			specs = append(specs, s)
		}
	}

	// Check every target before writing anything, so a refusal leaves
	// the directory as it was.
	files := []string{"ca.pem", "ca-key.pem"}
	for _, s := range specs {
		files = append(files, leafBase(s)+".pem", leafBase(s)+"-key.pem")
	}
	if !*force {
		for _, f := range files {
			p := filepath.Join(*out, f)
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s exists; use --force to overwrite", p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("check %s: %w", p, err)
			}
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", *out, err)
	}

	now := time.Now()
	ca, err := security.NewCA(*caName, now)
	if err != nil {
		return err
	}
	caKey, err := security.KeyPEM(ca.Key)
	if err != nil {
		return err
	}
	if err := writeCertFile(*out, "ca.pem", security.CertPEM(ca.Cert), 0o644, *force); err != nil {
		return err
	}
	if err := writeCertFile(*out, "ca-key.pem", caKey, 0o600, *force); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "%s\tCA %q\n", filepath.Join(*out, "ca.pem"), *caName)
	for _, s := range specs {
		if err := ctx.Err(); err != nil {
			return err
		}
		leaf, err := ca.Issue(s, now)
		if err != nil {
			return err
		}
		key, err := security.KeyPEM(leaf.Key)
		if err != nil {
			return err
		}
		base := leafBase(s)
		if err := writeCertFile(*out, base+".pem", security.CertPEM(leaf.Cert), 0o644, *force); err != nil {
			return err
		}
		if err := writeCertFile(*out, base+"-key.pem", key, 0o600, *force); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "%s\t%s\n", filepath.Join(*out, base+".pem"), security.CertIdentity(leaf.Cert))
	}
	return nil
}

func leafBase(s security.LeafSpec) string { return string(s.Role) + "-" + s.Name }

// writeCertFile writes data with mode perm. Without force it refuses an
// existing file even if one appeared after the up-front check (O_EXCL);
// with force it replaces the file and resets its mode, so an old key file
// left world-readable does not stay so.
func writeCertFile(dir, name string, data []byte, perm os.FileMode, force bool) error {
	p := filepath.Join(dir, name)
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("replace %s: %w", p, err)
		}
	}
	f, err := os.OpenFile(p, flags, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := f.Chmod(perm); err != nil { // umask may have narrowed or the mode is exact anyway
		f.Close()
		return fmt.Errorf("chmod %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}
