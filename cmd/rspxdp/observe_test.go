package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
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
	pe.wait(t, regexp.MustCompile(`pe 0x[0-9a-f]{8}: pool "obs"`))

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

// madeBin is the binary `make build` produced once for the tests that need
// a real executable (version, install, units, package): one compilation
// instead of one per test, which on a loaded machine ran past the
// package's test timeout.
var madeBin struct {
	once      sync.Once
	dir, path string
	err       error
}

const (
	testVersion = "v9.8.7-test"
	testCommit  = "c0ffee"
)

// makeBinary runs `make build` with a known version and commit, once.
func makeBinary(t *testing.T) string {
	t.Helper()
	testenv.RequireCommand(t, "make", "make")
	if testing.Short() {
		t.Skip("runs make build")
	}
	madeBin.once.Do(func() {
		root, err := testenv.ModuleRoot()
		if err != nil {
			madeBin.err = err
			return
		}
		if madeBin.dir, err = os.MkdirTemp("", "rspxdp-test-bin-"); err != nil {
			madeBin.err = err
			return
		}
		madeBin.path = filepath.Join(madeBin.dir, "rspxdp")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "make", "-C", root, "build", "BIN="+madeBin.path,
			"VERSION="+testVersion, "COMMIT="+testCommit).CombinedOutput()
		if err != nil {
			madeBin.err = fmt.Errorf("make build: %v\n%s", err, out)
		}
	})
	if madeBin.err != nil {
		t.Fatal(madeBin.err)
	}
	return madeBin.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if madeBin.dir != "" {
		os.RemoveAll(madeBin.dir)
	}
	os.Exit(code)
}

// `make build` links the version and commit in: the -X paths in the
// Makefile name real variables (a wrong path would be silently ignored).
func TestMakeBuildLinksVersion(t *testing.T) {
	bin := makeBinary(t)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v: %s", err, out)
	}
	if want := "rspxdp " + testVersion + " (commit " + testCommit + ", " + runtime.Version() + ")\n"; string(out) != want {
		t.Errorf("--version = %q, want %q", out, want)
	}
}
