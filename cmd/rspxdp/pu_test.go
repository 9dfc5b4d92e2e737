package main

import (
	"net"
	"strings"
	"testing"
)

func TestPoolToolsHelp(t *testing.T) {
	for _, cmd := range []string{"pe", "pu", "status"} {
		code, out, _ := runCLI(t, cmd, "--help")
		if code != 0 || !strings.Contains(out, "Examples:") || !strings.Contains(out, "rspxdp "+cmd+" --") {
			t.Errorf("%s --help: exit %d, output lacks examples:\n%s", cmd, code, out)
		}
	}
	if _, out, _ := runCLI(t, "pe", "--help"); !strings.Contains(out, "WeightedRoundRobin") || !strings.Contains(out, "chargen") {
		t.Errorf("pe --help does not list policies and services:\n%s", out)
	}
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func TestPoolToolsErrors(t *testing.T) {
	dead := deadAddr(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"pe", "--pool", "echo", "--registrar", dead, "--listen", "127.0.0.1:0", "--policy", "fastest"}, 2, `unknown policy "fastest"`},
		{[]string{"pe", "--pool", "echo", "--registrar", "localhost", "--listen", "127.0.0.1:0"}, 2, `--registrar "localhost": want HOST:PORT`},
		{[]string{"pe", "--pool", "echo", "--registrar", dead, "--listen", "nowhere"}, 2, `--listen "nowhere": want HOST:PORT`},
		{[]string{"pe", "--pool", "echo", "--registrar", dead, "--listen", "127.0.0.1:0", "--service", "quote"}, 2, `--service "quote"`},
		{[]string{"pe", "--registrar", dead, "--listen", "127.0.0.1:0"}, 2, "--pool is required"},
		{[]string{"pe", "--pool", "echo", "--listen", "127.0.0.1:0"}, 2, "give --registrar or --announces"},
		{[]string{"pu", "--pool", "echo", "--registrar", dead}, 2, "missing action"},
		{[]string{"pu", "--pool", "echo", "--registrar", dead, "fly"}, 2, `unknown action "fly"`},
		{[]string{"pu", "--pool", "echo", "--registrar", "10.0.0.1", "resolve"}, 2, "want HOST:PORT"},
		{[]string{"pu", "--pool", "echo", "--registrar", dead, "resolve"}, 1, "registrar " + dead + " unreachable"},
		{[]string{"pu", "--pool", "echo", "--registrar", dead, "resolve", "--json"}, 1, "registrar " + dead + " unreachable"},
		{[]string{"pe", "--pool", "echo", "--registrar", dead, "--listen", "127.0.0.1:0", "--register-timeout", "300ms"}, 1, "registrar " + dead + " unreachable"},
		{[]string{"status", "--registrar", dead}, 1, "registrar " + dead + " unreachable"},
		{[]string{"status"}, 2, "--registrar is required"},
		{[]string{"status", "--registrar", "x"}, 2, `--registrar "x": want HOST:PORT`},
	} {
		code, _, errs := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) || strings.Contains(errs, "goroutine ") {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
}
