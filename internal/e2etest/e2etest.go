// Package e2etest holds what the namespace end-to-end tests share: the
// rspxdp binary built once per test binary, processes started in a
// namespace with their output kept for waiting and for failure reports,
// constant-verdict XDP programs, and a scrape of a node's Prometheus
// metrics from inside its namespace.
package e2etest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/rspxdp/rspxdp/internal/netns"
	"github.com/rspxdp/rspxdp/internal/testenv"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/rspxdp once per test binary and returns its path.
// A TestMain calls RemoveBinary when the tests are done.
func Binary(t testing.TB) string {
	t.Helper()
	testenv.RequireCommand(t, "go", "golang-go")
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rspxdp-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "rspxdp")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", binPath, "github.com/rspxdp/rspxdp/cmd/rspxdp").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// RemoveBinary deletes what Binary built.
func RemoveBinary() {
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
}

// LogBuf collects a process's output, safe for concurrent use.
type LogBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LogBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Proc is a process in a namespace, in its own process group (ip netns
// exec execs the binary, so the group is exactly that process).
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Log  *LogBuf
	// Done is closed when the process has exited, at ExitAt.
	Done    chan struct{}
	Started time.Time
	ExitAt  time.Time
}

// Start runs bin with args in ns. When the test ends the process is
// killed and reaped, and its output is logged if the test failed.
func Start(t testing.TB, ns *netns.NS, name, bin string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: name, Log: &LogBuf{}, Done: make(chan struct{}), Started: time.Now()}
	p.Cmd = ns.Command(context.Background(), bin, args...)
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.Cmd.Stdout, p.Cmd.Stderr = p.Log, p.Log
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.Cmd.Wait(); p.ExitAt = time.Now(); close(p.Done) }()
	t.Cleanup(func() {
		p.Signal(syscall.SIGKILL)
		<-p.Done
		if t.Failed() {
			t.Logf("---- log of %s ----\n%s", name, p.Log.String())
		}
	})
	return p
}

// Signal sends sig to the process group.
func (p *Proc) Signal(sig syscall.Signal) { _ = syscall.Kill(-p.Cmd.Process.Pid, sig) }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.Done:
		return true
	default:
		return false
	}
}

// WaitLog waits until the output contains s, failing the test when it
// does not within timeout or the process exits first.
func (p *Proc) WaitLog(t testing.TB, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Log.String(), s) {
		if time.Now().After(deadline) || p.Exited() {
			t.Fatalf("%s: no %q in its output within %v (exited: %v):\n%s", p.Name, s, timeout, p.Exited(), p.Log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// XDP verdicts for VerdictProgram.
const (
	XDPDrop int32 = 1
	XDPPass int32 = 2
)

// VerdictProgram is an XDP program that returns verdict for every frame,
// closed when the test ends.
func VerdictProgram(t testing.TB, verdict int32) *ebpf.Program {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, verdict), asm.Return()}})
	if err != nil {
		t.Fatalf("XDP program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

// AttachPass attaches an XDP_PASS program in native mode to an interface
// of ns. A veth whose peer sends with native XDP_TX needs one (shared
// README: XDP_TX on a veth drops every frame otherwise). The link is
// detached when the test ends; Update swaps its program.
func AttachPass(t testing.TB, ns *netns.NS, ifname string) link.Link {
	t.Helper()
	prog := VerdictProgram(t, XDPPass)
	ifc, err := ns.Iface(ifname)
	if err != nil {
		t.Fatal(err)
	}
	var l link.Link
	if err := ns.Do(func() error {
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
		if err != nil {
			return fmt.Errorf("attach XDP_PASS to %s: %w", ifname, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// Metrics is one scrape: metric name -> label set -> value.
type Metrics map[string]map[string]float64

// Scrape reads /metrics at addr (host:port) from inside ns.
func Scrape(ns *netns.NS, addr string) (Metrics, error) {
	var c net.Conn
	if err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	}); err != nil {
		return nil, fmt.Errorf("scrape %s in %s: %w", addr, ns.Name, err)
	}
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return c, nil }}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape %s in %s: %w", addr, ns.Name, err)
	}
	defer resp.Body.Close()
	m := Metrics{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		name, labels := line[:sp], ""
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name, labels = line[:j], line[j:sp]
		}
		if m[name] == nil {
			m[name] = map[string]float64{}
		}
		m[name][labels] = v
	}
	return m, sc.Err()
}

// Sum adds the values of name whose label sets contain every filter.
func (m Metrics) Sum(name string, filters ...string) float64 {
	var s float64
next:
	for labels, v := range m[name] {
		for _, f := range filters {
			if !strings.Contains(labels, f) {
				continue next
			}
		}
		s += v
	}
	return s
}
