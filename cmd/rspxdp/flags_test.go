package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  []string
		json bool
		n    int
	}{
		{[]string{"FILE", "--json"}, []string{"FILE"}, true, 0},
		{[]string{"--json", "FILE"}, []string{"FILE"}, true, 0},
		{[]string{"-", "--n", "3"}, []string{"-"}, false, 3},
		{[]string{"a", "--n=2", "b", "--json"}, []string{"a", "b"}, true, 2},
		{[]string{"a", "--", "--json", "-x"}, []string{"a", "--json", "-x"}, false, 0},
		{nil, nil, false, 0},
	} {
		env := &cliEnv{stdout: new(bytes.Buffer), stderr: new(bytes.Buffer)}
		fs := newFlagSet(env, "t", "Usage: t")
		j := fs.Bool("json", false, "")
		n := fs.Int("n", 0, "")
		if err := parseFlags(fs, tc.args); err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if got := fs.Args(); !slices.Equal(got, tc.pos) && !(len(got) == 0 && len(tc.pos) == 0) || *j != tc.json || *n != tc.n {
			t.Errorf("%q: positionals %q json %v n %d; want %q %v %d", tc.args, fs.Args(), *j, *n, tc.pos, tc.json, tc.n)
		}
	}
}

func TestFlagErrorsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"--wait", "-1s"}, `--wait "-1s": negative duration`},
		{[]string{"--wait", "soon"}, `--wait "soon": not a duration like 5s or 100ms`},
		{[]string{"--count", "-3"}, `--count "-3": negative`},
		{[]string{"--log-level", "loud"}, `--log-level "loud": want debug, info, warn or error`},
		{[]string{"--log-format", "xml"}, `--log-format "xml": want text or json`},
		{[]string{"--wait"}, "flag needs an argument: --wait"},
	} {
		env := &cliEnv{stdout: new(bytes.Buffer), stderr: new(bytes.Buffer)}
		fs := newFlagSet(env, "t", "Usage: t")
		newDuration(fs, "wait", time.Second, "")
		newCount(fs, "count", 1, "")
		err := parseFlags(fs, tc.args)
		if !errors.As(err, new(usageError)) || err.Error() != tc.want {
			t.Errorf("%q: %v, want usage error %q", tc.args, err, tc.want)
		}
	}
}

// TestUsageErrorShortOnce: a mistake gets two lines on stderr (the error
// and where help is), nothing on stdout; --help goes to stdout, --flag.
func TestUsageErrorShortOnce(t *testing.T) {
	for _, cmd := range []string{"registrar", "node", "pe", "pu", "status", "decode", "certs", "demo"} {
		code, out, errs := runCLI(t, cmd, "--bogus")
		if code != 2 || out != "" || strings.Count(errs, "\n") != 2 || strings.Count(errs, "--bogus") != 1 {
			t.Errorf("%s --bogus: code %d, stdout %q, stderr %q; want 2, nothing, the error once in two lines", cmd, code, out, errs)
		}
		code, out, errs = runCLI(t, cmd, "--help")
		if code != 0 || errs != "" || !strings.Contains(out, "\n  --log-level debug|info|warn|error\n") {
			t.Errorf("%s --help: code %d, stderr %q, stdout lacks --log-level:\n%s", cmd, code, errs, out)
		}
		for _, l := range strings.Split(out[strings.Index(out, "\nFlags:\n"):], "\n") {
			if strings.HasPrefix(l, "  -") && !strings.HasPrefix(l, "  --") && !(len(l) > 4 && l[4] == ' ' || len(l) == 4) {
				t.Errorf("%s --help: flag line %q not spelt --flag", cmd, l)
			}
		}
	}
}

func TestLogFormatJSON(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, &cliEnv{stdout: &out, stderr: &errb}, []string{"registrar", "--id", "0x2a",
		"--asap", "127.0.0.1:0", "--enrp", "127.0.0.1:0", "--log-format", "json"})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	sc := bufio.NewScanner(&errb)
	lines := 0
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil || m["msg"] == nil || m["level"] == nil {
			t.Fatalf("not a JSON log line: %q (%v)", sc.Text(), err)
		}
		lines++
	}
	if lines < 2 {
		t.Fatalf("%d log lines", lines)
	}
}

func TestReloadKeepsGoingAndSaysWhy(t *testing.T) {
	var errb bytes.Buffer
	env := &cliEnv{stdout: new(bytes.Buffer), stderr: &errb}
	fs := newFlagSet(env, "t", "")
	if err := parseFlags(fs, nil); err != nil {
		t.Fatal(err)
	}
	env.logger()
	env.reload()
	if !strings.Contains(errb.String(), "SIGHUP: nothing to reload") {
		t.Fatalf("no-op reload not logged: %s", errb.String())
	}
	ran := 0
	env.onReload("bad", func() error { ran++; return errors.New("file is garbage") })
	env.onReload("good", func() error { ran++; return nil })
	env.reload()
	if ran != 2 || !strings.Contains(errb.String(), `level=ERROR msg="reload failed, keeping the old state" what=bad err="file is garbage"`) ||
		!strings.Contains(errb.String(), "msg=reloaded what=good") {
		t.Fatalf("ran %d:\n%s", ran, errb.String())
	}
}

func TestTidyError(t *testing.T) {
	for _, tc := range []struct{ cmd, in, want string }{
		{"decode", "decode: open x.pcap: no such file or directory", "open x.pcap: no such file or directory"},
		{"status", "registrar 10.0.0.1:9901 unreachable: tcp dial ENRP 10.0.0.1:9901: dial tcp 10.0.0.1:9901: connect: connection refused",
			"registrar 10.0.0.1:9901 unreachable: connect: connection refused"},
		{"pu", "resolve x: registrar [::1]:3863 unreachable: connect: connection refused\nregistrar [::1]:3863 unreachable: connect: connection refused",
			"resolve x: registrar [::1]:3863 unreachable: connect: connection refused"},
		{"pe", "listen 10.0.0.1:7: bind: address already in use", "listen 10.0.0.1:7: bind: address already in use"},
	} {
		if got := tidyError(tc.cmd, errors.New(tc.in)); got != tc.want {
			t.Errorf("tidyError(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

// TestTimeoutsNameWhatTimedOut: a registrar port that accepts and says
// nothing is reported with the flag that bounded the wait.
func TestTimeoutsNameWhatTimedOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	a := ln.Addr().String()
	code, _, errs := runCLI(t, "status", "--registrar", a, "--timeout", "300ms")
	if code != 1 || !strings.Contains(errs, "within --timeout 300ms") || strings.Contains(errs, "context deadline exceeded") {
		t.Errorf("status: code %d, %q", code, errs)
	}
	code, _, errs = runCLI(t, "pe", "--pool", "x", "--registrar", a, "--listen", "127.0.0.1:0", "--register-timeout", "300ms", "--log-level", "error")
	if code != 1 || !strings.Contains(errs, "no registrar accepted the registration within --register-timeout 300ms") {
		t.Errorf("pe: code %d, %q", code, errs)
	}
}
