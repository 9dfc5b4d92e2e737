package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRegistrarHelpDocumentsTimers(t *testing.T) {
	code, out, _ := runCLI(t, "registrar", "--help")
	if code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	for _, want := range []string{
		"--keepalive-interval", "--keepalive-timeout", "--heartbeat", "--max-time-last-heard",
		"--max-time-no-response", "--takeover-expiry", "--announce-interval", "--drain-timeout",
		"--leave-timeout", "--dial-timeout", "(5s)", "(2.444s)", "(2s", "(1s)", "(30s)", "Examples:", "--peer",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestRegistrarUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--peer", "notanaddr"},
		{"--keepalive-interval", "-1s"},
		{"--max-pes", "-1"},
		{"--max-hr-rate", "-2"},
		{"--id", "0"},
		{"--id", "nope"},
		{"--transport", "carrier-pigeon"},
		{"--allow-net", "10.0.0.0"},
		{"--advertise-asap", "localhost"},
		{"--log-level", "loud"},
		{"extra"},
	} {
		code, _, errs := runCLI(t, append([]string{"registrar"}, args...)...)
		if code != 2 || !strings.Contains(errs, "registrar --help") {
			t.Errorf("registrar %v: code %d stderr %q, want usage error", args, code, errs)
		}
	}
}

func TestRegistrarRunsUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, &cliEnv{stdout: &out, stderr: &errb}, []string{"registrar", "--id", "0x2a",
		"--asap", "127.0.0.1:0", "--enrp", "127.0.0.1:0", "--keepalive-interval", "100ms"})
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "registrar 0x0000002a: ASAP 127.0.0.1:") {
		t.Fatalf("stdout %q", out.String())
	}
	for _, want := range []string{"left the operation scope", "registrar left"} {
		if !strings.Contains(errb.String(), want) {
			t.Fatalf("no clean leave logged (%q): %s", want, errb.String())
		}
	}
}

// TestRegistrarCPUProfile: --cpu-profile leaves a pprof profile (gzip
// compressed protobuf) once the registrar stops; an unwritable path is a
// run-time error before anything is served.
func TestRegistrarCPUProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, &cliEnv{stdout: &out, stderr: &errb}, []string{"registrar", "--id", "0x2b",
		"--asap", "127.0.0.1:0", "--enrp", "127.0.0.1:0", "--cpu-profile", path})
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errb.String())
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("profile %s: %v, %d bytes, want a gzip-compressed pprof profile", path, err, len(b))
	}
	code, _, errs := runCLI(t, "registrar", "--asap", "127.0.0.1:0", "--enrp", "127.0.0.1:0", "--cpu-profile", filepath.Join(t.TempDir(), "no", "such", "dir"))
	if code != 1 || !strings.Contains(errs, "--cpu-profile") {
		t.Fatalf("unwritable profile: exit %d, stderr %q", code, errs)
	}
}
