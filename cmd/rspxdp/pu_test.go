package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/asap"
	"github.com/rspxdp/rspxdp/enrp"
	"github.com/rspxdp/rspxdp/selector/policy"
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
		{[]string{"status"}, 2, "give one of --registrar or --node"},
		{[]string{"status", "--registrar", "x"}, 2, `--registrar "x": want HOST:PORT`},
	} {
		code, _, errs := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) || strings.Contains(errs, "goroutine ") {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
}

// startTestRegistrar runs an in-process registrar and returns its ASAP and
// ENRP addresses.
func startTestRegistrar(t *testing.T) (string, string) {
	t.Helper()
	srv, err := enrp.NewServer(context.Background(), enrp.ServerConfig{
		Config:    enrp.Config{ID: 5, KeepAliveInterval: 100 * time.Millisecond, KeepAliveTimeout: 100 * time.Millisecond, DrainTimeout: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Transport: "tcp", ASAPListen: "127.0.0.1:0", ENRPListen: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv.ASAPAddr().String(), srv.ENRPAddr().String()
}

func TestResolveAndStatusJSON(t *testing.T) {
	asapAddr, enrpAddr := startTestRegistrar(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pe, err := asap.Register(ctx, "echo", ln, asap.WithRegistrars(asapAddr), asap.WithPolicy(policy.WeightedRoundRobin(3)),
		asap.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer pe.Close()
	id := fmt.Sprintf("0x%08x", pe.ID())

	code, out, errs := runCLI(t, "pu", "--pool", "echo", "--registrar", asapAddr, "resolve", "--json")
	var pes []jsonPE
	if code != 0 || json.Unmarshal([]byte(out), &pes) != nil {
		t.Fatalf("pu resolve --json: exit %d, %q %q", code, out, errs)
	}
	if len(pes) != 1 || pes[0].ID != id || pes[0].Addr != ln.Addr().String() || pes[0].Home != "0x00000005" ||
		pes[0].Policy != "WeightedRoundRobin" || pes[0].Settings != "wrr:3" || pes[0].Values["weight"] != 3 {
		t.Fatalf("resolve: %+v", pes)
	}
	code, out, _ = runCLI(t, "pu", "--pool", "echo", "--registrar", asapAddr, "resolve")
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, " wrr:3") {
		t.Fatalf("pu resolve: exit %d\n%s", code, out)
	}
	code, out, errs = runCLI(t, "status", "--registrar", enrpAddr, "--json")
	var st struct {
		Registrar string
		Pools     []struct {
			Handle string
			PEs    []jsonPE
		}
		Checksums map[string]string
		Total     string `json:"total_checksum"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status --json: exit %d, %q %q", code, out, errs)
	}
	if st.Registrar != "0x00000005" || len(st.Pools) != 1 || st.Pools[0].Handle != "echo" || st.Pools[0].PEs[0].ID != id ||
		st.Checksums["0x00000005"] == "" || st.Checksums["0x00000005"] != st.Total {
		t.Fatalf("status: %+v", st)
	}
	code, out, _ = runCLI(t, "pu", "--pool", "nothere", "--registrar", asapAddr, "resolve")
	if code != 1 {
		t.Fatalf("resolving an unknown pool: exit %d, %s", code, out)
	}
}
