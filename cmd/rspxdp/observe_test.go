package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/testenv"
)

// inProc runs the dispatcher in a goroutine until the test ends.
type inProc struct {
	out, err syncBuf
	done     chan int
}

func startInProc(t *testing.T, args ...string) *inProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &inProc{done: make(chan int, 1)}
	go func() { p.done <- run(ctx, &cliEnv{stdout: &p.out, stderr: &p.err}, args) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			t.Errorf("%v did not stop", args)
		}
		if t.Failed() {
			t.Logf("%v stdout:\n%s\nstderr:\n%s", args, p.out.String(), p.err.String())
		}
	})
	return p
}

// wait returns the submatches of re once stdout+stderr match it.
func (p *inProc) wait(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(p.out.String() + p.err.String()); m != nil {
			return m
		}
		select {
		case code := <-p.done:
			t.Fatalf("exited %d before %q", code, re)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no %q within 15s", re)
	return nil
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var metricsAddrRE = regexp.MustCompile(`metrics listener up"? addr=(127\.0\.0\.1:\d+)`)

// `rspxdp registrar --metrics` and `rspxdp pe --metrics` serve /metrics
// (standard collectors, build info, their own counters), /healthz and
// /readyz.
func TestRegistrarAndPEMetricsListeners(t *testing.T) {
	reg := startInProc(t, "registrar", "--id", "0x51", "--asap", "127.0.0.1:0", "--enrp", "127.0.0.1:0",
		"--metrics", "127.0.0.1:0", "--leave-timeout", "0")
	asapAddr := reg.wait(t, regexp.MustCompile(`ASAP (127\.0\.0\.1:\d+)`))[1]
	regMetrics := "http://" + reg.wait(t, metricsAddrRE)[1]

	pe := startInProc(t, "pe", "--pool", "obs", "--registrar", asapAddr, "--listen", "127.0.0.1:0",
		"--service", "echo", "--metrics", "127.0.0.1:0", "--drain-timeout", "100ms")
	peMetrics := "http://" + pe.wait(t, metricsAddrRE)[1]
	pe.wait(t, regexp.MustCompile(`pe \$[0-9a-f]{8}: pool "obs"`))

	for _, tc := range []struct {
		url, want string
		code      int
	}{
		{regMetrics + "/healthz", "ok", 200},
		{regMetrics + "/readyz", "[+]registrar ok", 200},
		{regMetrics + "/metrics", `rspxdp_build_info{commit=`, 200},
		{regMetrics + "/metrics", "go_goroutines ", 200},
		{regMetrics + "/metrics", "process_start_time_seconds ", 200},
		{regMetrics + "/metrics", `rspxdp_pool_elements{pool="obs",state="active"} 1`, 200},
		{regMetrics + "/metrics", `rspxdp_registrations_rejected_total{cause="invalid_values"} 0`, 200},
		{peMetrics + "/healthz", "ok", 200},
		{peMetrics + "/readyz", "[+]registered ok", 200},
		{peMetrics + "/metrics", "rspxdp_pe_registered 1", 200},
		{peMetrics + "/metrics", "rspxdp_build_info{", 200},
		{peMetrics + "/metrics", "process_resident_memory_bytes ", 200},
	} {
		code, body := httpGet(t, tc.url)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s: %d, want %d with %q; body:\n%s", tc.url, code, tc.code, tc.want, body)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, out, errs := runCLI(t, args...)
		want := regexp.MustCompile(`^rspxdp \S+ \(commit \S+, ` + regexp.QuoteMeta(runtime.Version()) + `\)\n$`)
		if code != 0 || !want.MatchString(out) {
			t.Errorf("rspxdp %v: %d %q %q, want %s", args, code, out, errs, want)
		}
	}
}

// `make build` links the version and commit in: the -X paths in the
// Makefile name real variables (a wrong path would be silently ignored).
func TestMakeBuildLinksVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("runs make build")
	}
	testenv.RequireCommand(t, "make", "make")
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "rspxdp")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-C", root, "build", "BIN="+bin, "VERSION=v9.8.7-test", "COMMIT=c0ffee")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v: %s", err, out)
	}
	if want := "rspxdp v9.8.7-test (commit c0ffee, " + runtime.Version() + ")\n"; string(out) != want {
		t.Errorf("--version = %q, want %q", out, want)
	}
	_ = os.Remove(bin)
}
