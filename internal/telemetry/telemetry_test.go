package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

func TestBuildFallsBackToToolchainInfo(t *testing.T) {
	b := Build()
	if b.GoVersion != runtime.Version() {
		t.Errorf("GoVersion %q, want %q", b.GoVersion, runtime.Version())
	}
	if b.Version == "" || b.Commit == "" {
		t.Errorf("empty field in %+v", b)
	}
	if got := b.String(); !strings.HasPrefix(got, "rspxdp "+b.Version+" (commit "+b.Commit) {
		t.Errorf("String() = %q", got)
	}
}

func TestBuildPrefersLinkTimeValues(t *testing.T) {
	old := [2]string{version, commit}
	t.Cleanup(func() { version, commit = old[0], old[1] })
	version, commit = "v9.9.9", "0123abc"
	if b := Build(); b.Version != "v9.9.9" || b.Commit != "0123abc" {
		t.Errorf("Build() = %+v, want the -X values", b)
	}
}

// Every registry carries the standard collectors and build_info.
func TestNewRegistryHasStandardCollectors(t *testing.T) {
	mfs, err := NewRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "go_info",
		"process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds", "rspxdp_build_info"} {
		if byName[name] == nil {
			t.Errorf("registry lacks %s", name)
		}
	}
	bi := byName["rspxdp_build_info"]
	if bi == nil {
		t.FailNow()
	}
	labels := map[string]string{}
	for _, l := range bi.Metric[0].Label {
		labels[l.GetName()] = l.GetValue()
	}
	b := Build()
	want := map[string]string{"version": b.Version, "commit": b.Commit, "goversion": b.GoVersion}
	for k, v := range want {
		if labels[k] != v {
			t.Errorf("rspxdp_build_info{%s=%q}, want %q", k, labels[k], v)
		}
	}
	if v := bi.Metric[0].GetGauge().GetValue(); v != 1 {
		t.Errorf("rspxdp_build_info = %v, want 1", v)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMuxHealthAndReadiness(t *testing.T) {
	ready := errors.New("peers: none heard yet")
	checks := []Check{
		{Name: "registrar", Func: func() error { return nil }},
		{Name: "peers", Func: func() error { return ready }},
	}
	srv, err := Listen("127.0.0.1:0", Mux(NewRegistry(), checks))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, nil) }()
	base := "http://" + srv.Addr().String()

	tests := []struct {
		path, wantBody string
		wantCode       int
	}{
		{"/healthz", "ok", 200},
		{"/readyz", "[-]peers: peers: none heard yet", 503},
		{"/readyz", "[+]registrar ok", 503},
		{"/metrics", "rspxdp_build_info{", 200},
	}
	for _, tc := range tests {
		code, body := get(t, base+tc.path)
		if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
			t.Errorf("GET %s = %d %q, want %d containing %q", tc.path, code, body, tc.wantCode, tc.wantBody)
		}
	}
	ready = nil
	if code, body := get(t, base+"/readyz"); code != 200 || !strings.Contains(body, "[+]peers ok") {
		t.Errorf("GET /readyz once ready = %d %q", code, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}
