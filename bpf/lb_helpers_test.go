package bpf_test

import (
	"bufio"
	"encoding/hex"
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rspxdp/rspxdp/internal/testenv"
)

// readBenchFrames reads ../shared/fixtures/bench-frames.txt: name, hex.
func readBenchFrames(t testing.TB) map[string][]byte {
	t.Helper()
	f, err := os.Open(testenv.SharedFixture(t, "bench-frames.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, h, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("bench frames: bad line %q", line)
		}
		b, err := hex.DecodeString(strings.TrimSpace(h))
		if err != nil {
			t.Fatalf("bench frame %s: %v", name, err)
		}
		out[name] = b
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"v4_tcp_syn", "v4_tcp_ack", "v6_tcp_syn", "v6_tcp_ack", "v4_udp_nonvip"} {
		if out[want] == nil {
			t.Fatalf("bench frames: %s missing", want)
		}
	}
	return out
}

// pinCPU keeps the test goroutine on CPU 0, for per-CPU state such as the
// flood guard's window to be one window.
func pinCPU(t testing.TB) { pinCPUTo(t, 0) }

// pinCPUTo keeps the test goroutine on one CPU until the test ends.
func pinCPUTo(t testing.TB, cpu int) {
	t.Helper()
	runtime.LockOSThread()
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatal(err)
	}
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	})
}
