package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/netns"
	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/loader/loadertest"
)

// The signals an operator or systemd sends, to the built binary: SIGHUP
// reloads and never stops a registrar, a PE or a PU (with and without TLS),
// a reload that fails keeps the old state and says why, SIGTERM ends
// gracefully with status 0 and SIGINT with 130.

const signalPolicy = `version: 1
rules:
  - identity: "rspxdp://registrar/*"
    peer: true
    resolve: ["*"]
  - identity: "rspxdp://pe/echo-*"
    register: ["echo"]
    networks: ["127.0.0.0/8"]
  - identity: "rspxdp://pu/*"
    resolve: ["echo"]
`

// hangup sends SIGHUP and waits for the process to log the reload's
// outcome (matching want); the process must still be running afterwards.
func (p *proc) hangup(t *testing.T, want string) {
	t.Helper()
	before := strings.Count(p.err.String(), want)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP %s: %v", p.name, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(p.err.String(), want) == before {
		select {
		case <-p.done:
			t.Fatalf("%s exited on SIGHUP (%v)", p.name, p.exitErr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q after SIGHUP", p.name, want)
		}
	}
	// Still alive a moment later: the signal's default action would have
	// killed it by now.
	select {
	case <-p.done:
		t.Fatalf("%s exited after SIGHUP (%v)", p.name, p.exitErr)
	case <-time.After(100 * time.Millisecond):
	}
}

// stop sends sig and checks the exit status and a line of the graceful end.
func (p *proc) stop(t *testing.T, sig syscall.Signal, code int, said string) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%v %s: %v", sig, p.name, err)
	}
	p.wait(t, 20*time.Second)
	if got := p.cmd.ProcessState.ExitCode(); got != code {
		t.Fatalf("%s after %v: exit status %d, want %d", p.name, sig, got, code)
	}
	if !strings.Contains(p.out.String()+p.err.String(), said) {
		t.Fatalf("%s after %v: no %q in its output", p.name, sig, said)
	}
}

func TestSignalsReloadAndStop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := buildBinary(t)
	pki := t.TempDir()
	if code, _, errs := runCLI(t, "certs", "--out", pki, "--registrar", "r1", "--ip", "127.0.0.1", "--pe", "echo-1", "--pu", "client"); code != 0 {
		t.Fatalf("certs: %s", errs)
	}
	policy := filepath.Join(pki, "policy.yaml")
	tlsArgs := func(role string) []string {
		return []string{"--tls-ca", filepath.Join(pki, "ca.pem"), "--tls-cert", filepath.Join(pki, role+".pem"),
			"--tls-key", filepath.Join(pki, role+"-key.pem")}
	}
	for _, withTLS := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "TLS"}[withTLS]
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(policy, []byte(signalPolicy), 0o600); err != nil {
				t.Fatal(err)
			}
			regArgs := []string{"registrar", "--id", "7", "--asap", "127.0.0.1:0", "--enrp", "127.0.0.1:0"}
			peArgs := []string{"pe", "--pool", "echo", "--listen", "127.0.0.1:0", "--service", "echo"}
			puArgs := []string{"pu", "--pool", "echo", "echo", "--count", "100000", "--interval", "20ms", "--log-level", "info"}
			if withTLS {
				regArgs = append(append(regArgs, tlsArgs("registrar-r1")...), "--policy", policy)
				peArgs = append(peArgs, tlsArgs("pe-echo-1")...)
				puArgs = append(puArgs, tlsArgs("pu-client")...)
			}
			reg := startProc(t, bin, "registrar", regArgs...)
			asapAddr := reg.waitOut(t, regexp.MustCompile(`ASAP (127\.0\.0\.1:\d+)`), 10*time.Second)[1]
			pe := startProc(t, bin, "pe", append(peArgs, "--registrar", asapAddr)...)
			pe.waitOut(t, regexp.MustCompile(`pe \S+: pool "echo"`), 10*time.Second)
			pu := startProc(t, bin, "pu", append(puArgs, "--registrar", asapAddr)...)
			pu.waitOut(t, regexp.MustCompile(`line 2: answer`), 10*time.Second)

			if withTLS {
				reg.hangup(t, `msg=reloaded what=policy`)
				pe.hangup(t, `msg=reloaded what="TLS material"`)
				pu.hangup(t, `msg=reloaded what="TLS material"`)
				// A broken policy is refused; the old one stays in force.
				if err := os.WriteFile(policy, []byte("rules: [{identity: 5, bogus: true}]\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				reg.hangup(t, `msg="reload failed, keeping the old state" what=policy`)
			} else {
				for _, p := range []*proc{reg, pe, pu} {
					p.hangup(t, "SIGHUP: nothing to reload")
				}
			}
			// Everything still works after the reloads.
			n := strings.Count(pu.out.String(), "answer from PE")
			for deadline := time.Now().Add(10 * time.Second); strings.Count(pu.out.String(), "answer from PE") < n+3; {
				if time.Now().After(deadline) {
					t.Fatalf("the PU's session stalled after the reloads")
				}
				time.Sleep(20 * time.Millisecond)
			}

			pu.stop(t, syscall.SIGINT, 130, "answer from PE")
			pe.stop(t, syscall.SIGTERM, 0, "drained")
			reg.stop(t, syscall.SIGINT, 130, "left the operation scope")
		})
	}
}

// TestNodeSignals: the node, in a namespace with a veth, reloads its
// configuration file on SIGHUP (with and without TLS), keeps running when
// the file is broken, and stops on SIGINT with 130 after detaching.
func TestNodeSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs an XDP node")
	}
	testenv.RequireRoot(t)
	bin := buildBinary(t)
	pki := t.TempDir()
	if code, _, errs := runCLI(t, "certs", "--out", pki, "--registrar", "n1", "--ip", "127.0.0.1"); code != 0 {
		t.Fatalf("certs: %s", errs)
	}
	policy := filepath.Join(pki, "policy.yaml")
	if err := os.WriteFile(policy, []byte(signalPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, withTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "TLS"}[withTLS], func(t *testing.T) {
			a, b := netns.New(t, "sig"), netns.New(t, "sigc")
			if _, _, err := netns.Veth(a, "n0", b, "c0"); err != nil {
				t.Fatal(err)
			}
			cfgFile := filepath.Join(t.TempDir(), "node.yaml")
			doc := "vips:\n  - {handle: web, address: \"10.200.1.1:7\", protocol: tcp}\n"
			if withTLS {
				doc += "registrar:\n  tls: {ca: " + filepath.Join(pki, "ca.pem") + ", cert: " + filepath.Join(pki, "registrar-n1.pem") +
					", key: " + filepath.Join(pki, "registrar-n1-key.pem") + ", policy: " + policy + "}\n"
			}
			if err := os.WriteFile(cfgFile, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			p := &proc{name: "node", done: make(chan struct{})}
			p.cmd = a.Command(context.Background(), bin, "node", "--config", cfgFile, "-i", "n0", "--mode", "generic",
				"--pin-dir", loadertest.PinDir(t), "--asap", "127.0.0.1:0", "--enrp", "127.0.0.1:0", "--metrics", "")
			p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.err
			if err := p.cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { p.exitErr = p.cmd.Wait(); close(p.done) }()
			t.Cleanup(func() {
				p.cmd.Process.Kill()
				<-p.done
				if t.Failed() {
					t.Logf("node stdout:\n%s\nnode stderr:\n%s", p.out.String(), p.err.String())
				}
			})
			p.waitOut(t, regexp.MustCompile(`node \S+: ASAP`), 30*time.Second)
			if !strings.Contains(p.err.String(), `msg="XDP program attached" interface=n0 mode=generic`) {
				t.Errorf("the attach is not logged with its interface and mode")
			}
			p.hangup(t, `msg=reloaded what="node configuration"`)
			if err := os.WriteFile(cfgFile, []byte("vips: 5\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			p.hangup(t, `msg="reload failed, keeping the old state" what="node configuration"`)
			if !strings.Contains(p.err.String(), `vips: \"5\" is not a list`) {
				t.Errorf("the failed reload does not say why")
			}
			p.stop(t, syscall.SIGINT, 130, "detached the data plane")
		})
	}
}

// TestStatusOfTLSRegistrar: status --registrar takes the TLS flags and
// reads a TLS registrar's handlespace with a certificate it lets peer.
func TestStatusOfTLSRegistrar(t *testing.T) {
	pki := t.TempDir()
	if code, _, errs := runCLI(t, "certs", "--out", pki, "--registrar", "r1,r2", "--ip", "127.0.0.1"); code != 0 {
		t.Fatalf("certs: %s", errs)
	}
	policy := filepath.Join(pki, "policy.yaml")
	if err := os.WriteFile(policy, []byte(signalPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsArgs := func(name string) []string {
		return []string{"--tls-ca", filepath.Join(pki, "ca.pem"), "--tls-cert", filepath.Join(pki, "registrar-"+name+".pem"),
			"--tls-key", filepath.Join(pki, "registrar-"+name+"-key.pem")}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuf
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, &cliEnv{stdout: &out, stderr: &errb}, append([]string{"registrar", "--id", "0x51",
			"--asap", "127.0.0.1:0", "--enrp", "127.0.0.1:0", "--policy", policy}, tlsArgs("r1")...))
	}()
	var enrpAddr string
	for deadline := time.Now().Add(10 * time.Second); enrpAddr == ""; time.Sleep(10 * time.Millisecond) {
		if m := regexp.MustCompile(`ENRP (127\.0\.0\.1:\d+)`).FindStringSubmatch(out.String()); m != nil {
			enrpAddr = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("registrar did not start: %s", errb.String())
		}
	}
	code, stdout, errs := runCLI(t, append([]string{"status", "--registrar", enrpAddr, "--json"}, tlsArgs("r2")...)...)
	if code != 0 || !strings.Contains(stdout, `"registrar": "0x00000051"`) {
		t.Fatalf("status with TLS: exit %d, %s%s", code, stdout, errs)
	}
	if code, _, _ := runCLI(t, "status", "--registrar", enrpAddr, "--timeout", "1s"); code == 0 {
		t.Fatalf("status without TLS read a TLS registrar")
	}
	cancel()
	<-done
}
