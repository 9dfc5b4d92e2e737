package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/testenv"
)

// End to end through the binary: a registrar, three PEs and a PU as
// separate processes on 127.0.0.1; one PE is killed mid-session and the PU
// finishes on another.

// syncBuf is a bytes.Buffer safe for a process writing and a test reading.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type proc struct {
	name     string
	cmd      *exec.Cmd
	out, err syncBuf
	done     chan struct{}
	exitErr  error
}

func startProc(t *testing.T, bin, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.err
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.exitErr = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s stdout:\n%s\n%s stderr:\n%s", name, p.out.String(), name, p.err.String())
		}
	})
	return p
}

// waitOut waits until the process's stdout matches re and returns the
// submatches.
func (p *proc) waitOut(t *testing.T, re *regexp.Regexp, d time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if m := re.FindStringSubmatch(p.out.String()); m != nil {
			return m
		}
		select {
		case <-p.done:
			if m := re.FindStringSubmatch(p.out.String()); m != nil {
				return m
			}
			t.Fatalf("%s exited (%v) before printing %q", p.name, p.exitErr, re)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q within %v", p.name, re, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.exitErr
	case <-time.After(d):
		t.Fatalf("%s still running after %v", p.name, d)
		return nil
	}
}

func buildBinary(t *testing.T) string {
	t.Helper()
	goTool := testenv.RequireCommand(t, "go", "golang-go")
	bin := filepath.Join(t.TempDir(), "rspxdp")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestCLIFailoverEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := buildBinary(t)
	reg := startProc(t, bin, "registrar", "registrar", "--id", "7", "--asap", "127.0.0.1:0", "--enrp", "127.0.0.1:0",
		"--keepalive-interval", "100ms", "--keepalive-timeout", "100ms", "--log-level", "warn")
	m := reg.waitOut(t, regexp.MustCompile(`ASAP (127\.0\.0\.1:\d+), ENRP (127\.0\.0\.1:\d+)`), 10*time.Second)
	asapAddr, enrpAddr := m[1], m[2]

	pes := map[string]*proc{}
	for i := 0; i < 3; i++ {
		p := startProc(t, bin, fmt.Sprintf("pe%d", i), "pe", "--pool", "echo", "--registrar", asapAddr,
			"--listen", "127.0.0.1:0", "--service", "echo", "--policy", "rr")
		id := p.waitOut(t, regexp.MustCompile(`pe 0x([0-9a-f]{8}): pool "echo"`), 10*time.Second)[1]
		pes[id] = p
	}
	// The handlespace as the operator sees it.
	code, out, errs := runCLI(t, "status", "--registrar", enrpAddr)
	if code != 0 || !strings.Contains(out, `pool "echo": 3 PE(s)`) || !strings.Contains(out, "owner 0x00000007: checksum 0x") {
		t.Fatalf("status: exit %d\n%s%s", code, out, errs)
	}

	pu := startProc(t, bin, "pu", "pu", "--pool", "echo", "--registrar", asapAddr, "echo",
		"--count", "40", "--interval", "25ms", "--log-level", "error")
	first := pu.waitOut(t, regexp.MustCompile(`session with pool "echo" on PE 0x([0-9a-f]{8})@`), 10*time.Second)[1]
	pu.waitOut(t, regexp.MustCompile(`line 5: answer from PE`), 10*time.Second)
	victim := pes[first]
	if victim == nil {
		t.Fatalf("PU on unknown PE %s", first)
	}
	t.Logf("%v: killing PE %s", time.Now().Format("15:04:05.000"), first)
	victim.cmd.Process.Signal(syscall.SIGKILL)
	if err := pu.wait(t, 30*time.Second); err != nil {
		t.Fatalf("pu: %v\n%s", err, pu.out.String())
	}
	o := pu.out.String()
	fo := regexp.MustCompile(`FAILOVER failover from PE 0x` + first + `@\S+ to PE 0x([0-9a-f]{8})@\S+ after \S+ \(cookie echoed: true\)`).FindStringSubmatch(o)
	if fo == nil || !strings.Contains(o, "done: 40 lines answered") {
		t.Fatalf("pu output lacks the failover or the end:\n%s", o)
	}
	to := pes[fo[1]]
	if to == nil || to == victim {
		t.Fatalf("failed over to %s, not one of the other PEs", fo[1])
	}
	if !regexp.MustCompile(`cookie echo from a failed-over pool user.*cookie="pe=0x` + first).MatchString(to.err.String()) {
		t.Fatalf("new PE did not log the old PE's cookie:\n%s", to.err.String())
	}
	if !strings.Contains(o, "line 40: answer from PE 0x"+fo[1]) {
		t.Fatalf("session did not finish on the new PE:\n%s", o)
	}
	t.Logf("%v: PU done", time.Now().Format("15:04:05.000"))
	// The surviving PEs drain on SIGTERM and exit cleanly.
	for id, p := range pes {
		if p == victim {
			continue
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		if err := p.wait(t, 10*time.Second); err != nil {
			t.Fatalf("pe %s after SIGTERM: %v", id, err)
		}
		if !strings.Contains(p.out.String(), "drained") {
			t.Fatalf("pe %s did not drain:\n%s", id, p.out.String())
		}
	}
	// Interrupted, it leaves and exits 130 as an interrupted command does.
	reg.cmd.Process.Signal(os.Interrupt)
	if err := reg.wait(t, 10*time.Second); reg.cmd.ProcessState.ExitCode() != 130 {
		t.Fatalf("registrar after SIGINT: %v, want exit status 130", err)
	}
}
