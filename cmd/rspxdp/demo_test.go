package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/testenv"
)

func requireDemo(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "iproute2")
	testenv.RequireCommand(t, "ethtool", "ethtool")
	if testing.Short() {
		t.Skip("builds the binary and runs the demo")
	}
	return buildBinary(t)
}

// demoLeftovers lists what a demo run may leave behind: its namespaces and
// bpffs mounts.
func demoLeftovers(t *testing.T) []string {
	t.Helper()
	var left []string
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, demoPrefix) {
			left = append(left, "namespace "+strings.Fields(l)[0])
		}
	}
	mounts, _ := exec.Command("grep", "rspxdp-demo-", "/proc/mounts").Output()
	for _, l := range strings.Split(strings.TrimSpace(string(mounts)), "\n") {
		if l != "" {
			left = append(left, "mount "+l)
		}
	}
	return left
}

// The README's first command: the whole demo runs, its figures say what the
// issue asks (every connection answered, drain keeps open connections and
// takes no new ones, failover measured), and it leaves nothing behind.
func TestDemo(t *testing.T) {
	bin := requireDemo(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "demo", "--connections", "120").CombinedOutput()
	t.Logf("demo output:\n%s", out)
	if err != nil {
		t.Fatalf("demo failed: %v", err)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`120 new connections to 10\.99\.0\.1:7 \(120 answered, 0 failed\)`),
		regexp.MustCompile(`(?m)^  pe1 +\d+ `),
		regexp.MustCompile(`(?m)^  pe3 +\d+ `),
		regexp.MustCompile(`12/12 open connections still echo; pe2 still got [1-9]\d* packets`),
		regexp.MustCompile(`pe2 got 0 of them`),
		regexp.MustCompile(`killed pe1 \(SIGKILL\): its \d+ flows answered again from another PE after \d+ ms`),
		regexp.MustCompile(`(?m)^    \$00000066 +10\.0\.12\.2 +draining +0 `),
		regexp.MustCompile(`(?m)^    \$00000067 +10\.0\.13\.2 +active +1 `),
		regexp.MustCompile(`done; removing`),
	} {
		if !want.Match(out) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// Every PE got a share of the first burst: none below 15% of 120.
	for _, m := range regexp.MustCompile(`(?m)^  (pe\d) +(\d+) `).FindAllSubmatch(out, 3) {
		if n, _ := strconv.Atoi(string(m[2])); n < 18 {
			t.Errorf("%s got only %d of 120 new connections", m[1], n)
		}
	}
	if m := regexp.MustCompile(`after (\d+) ms`).FindSubmatch(out); m != nil {
		t.Logf("failover: %s ms from SIGKILL to the dead PE's flows answered elsewhere", m[1])
	}
	if left := demoLeftovers(t); len(left) > 0 {
		t.Errorf("demo left behind: %v", left)
	}
}

// A second demo while one runs is refused instead of tearing the first
// one's namespaces down.
func TestDemoRefusesToRunTwice(t *testing.T) {
	bin := requireDemo(t)
	lock, err := os.OpenFile(demoLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	out, err := exec.Command(bin, "demo").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another rspxdp demo is running") {
		t.Fatalf("second demo: %v, %s", err, out)
	}
}

// Ctrl-C in the middle of the demo still removes everything.
func TestDemoInterruptedCleansUp(t *testing.T) {
	bin := requireDemo(t)
	cmd := exec.Command(bin, "demo")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	up := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "PEs registered") {
				up <- true
			}
		}
		close(up)
	}()
	select {
	case ok := <-up:
		if !ok {
			t.Fatal("demo exited before its PEs registered")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("demo's PEs did not register within 60s")
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not exit within 30s of SIGINT")
	}
	if left := demoLeftovers(t); len(left) > 0 {
		t.Errorf("interrupted demo left behind: %v", left)
	}
}
