package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rspxdp/rspxdp/node"
)

func TestNodeRefusesBadConfiguration(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--vip", "web=10.0.0.1:80/tcp"}, "--interface: none given"},
		{[]string{"-i", "eth0"}, "--vip: none given"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1/tcp"}, "vip \"web=10.0.0.1/tcp\": address"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80/gre"}, "protocol"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--mode", "fast"}, `--mode: "fast" is not auto, native or generic`},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--table-size", "1000"}, "not prime"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--seed", "x"}, "--seed"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--bgp-peer", "10.0.0.1"}, "--bgp-peer"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--bgp-peer", "10.0.0.1,asn=65000"}, "--bgp-asn: required"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--bgp-asn", "65001", "--bgp-router-id", "10.0.0.2",
			"--bgp-peer", "10.0.0.1,asn=65000,hold-time=1s"}, "bgp.peers[0].hold-time"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--config", "/nonexistent.yaml"}, "no such file"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--id", "0"}, "--id"},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--peer", "notanaddr"}, `--peer "notanaddr": not HOST:PORT`},
		{[]string{"-i", "eth0", "--vip", "web=10.0.0.1:80", "--keepalive-interval", "-1s"}, `--keepalive-interval "-1s": negative duration`},
	} {
		code, _, errs := runCLI(t, append([]string{"node"}, tc.args...)...)
		if code != 2 || !strings.Contains(errs, tc.want) || strings.Contains(errs, "goroutine") {
			t.Errorf("rspxdp node %v: code %d, stderr %q; want code 2 and a message containing %q", tc.args, code, errs, tc.want)
		}
	}
}

// helpFlags returns the flags a subcommand's --help lists.
func helpFlags(t *testing.T, cmd string) map[string]bool {
	t.Helper()
	code, out, _ := runCLI(t, cmd, "--help")
	if code != 0 {
		t.Fatalf("%s --help: exit %d", cmd, code)
	}
	flags := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		if f, ok := strings.CutPrefix(l, "  -"); ok {
			f = strings.TrimPrefix(f, "-")
			flags[strings.Fields(f)[0]] = true
		}
	}
	return flags
}

// TestNodeRegistrarFlagParity: the node takes every flag the registrar
// takes, and every field of its YAML has a flag.
func TestNodeRegistrarFlagParity(t *testing.T) {
	reg, nd := helpFlags(t, "registrar"), helpFlags(t, "node")
	for f := range reg {
		if !nd[f] {
			t.Errorf("registrar has --%s, node has not", f)
		}
	}
	for _, f := range []string{"tls-ca", "tls-cert", "tls-key", "policy", "allow-net", "allow-handle", "max-pools",
		"max-pes-per-pool", "max-connections", "max-hr-rate", "max-eu-rate", "log-format", "log-level"} {
		if !nd[f] {
			t.Errorf("node lacks --%s", f)
		}
	}
	rf := addRegistrarFlags(flag.NewFlagSet("x", flag.ContinueOnError))
	for path, name := range nodeFlagFields {
		rf.yaml[path] = name
	}
	for _, path := range yamlLeaves(reflect.TypeOf(node.Config{}), "") {
		name, ok := rf.yaml[path]
		if !ok {
			t.Errorf("YAML field %s has no flag", path)
			continue
		}
		if !nd[name] {
			t.Errorf("YAML field %s: node has no --%s", path, name)
		}
	}
}

// yamlLeaves lists the dotted YAML paths of t's fields that hold values:
// scalars, durations and lists.
func yamlLeaves(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		path := prefix + tag
		if f.Type.Kind() == reflect.Struct {
			out = append(out, yamlLeaves(f.Type, path+".")...)
			continue
		}
		out = append(out, path)
	}
	return out
}

// TestNodeFlagsRefuseWhatTheFileRefuses: the same mistake is refused by
// flag (naming the flag) and in the file (naming the field and the file).
func TestNodeFlagsRefuseWhatTheFileRefuses(t *testing.T) {
	base := []string{"node", "-i", "eth0", "--vip", "web=10.0.0.1:80"}
	dir := t.TempDir()
	file := func(doc string) string {
		p := filepath.Join(dir, fmt.Sprintf("c%d.yaml", len(doc)))
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	long := strings.Repeat("h", 300)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--peer", "notanaddr"}, `--peer "notanaddr": not HOST:PORT`},
		{[]string{"--keepalive-interval", "-1s"}, `--keepalive-interval "-1s": negative duration`},
		{[]string{"--max-pools", "-1"}, `--max-pools "-1": negative`},
		{[]string{"--allow-net", "10.0.0.0"}, `--allow-net "10.0.0.0": not a prefix`},
		{[]string{"--allow-handle", long}, `pool handle of 300 bytes; at most 255`},
		{[]string{"--tls-ca", "ca.pem"}, "--tls-ca, --tls-cert, --tls-key: ca, cert and key go together"},
		{[]string{"--policy", "p.yaml"}, "--policy: needs ca, cert and key"},
		{[]string{"--transport", "sctp", "--tls-ca", "a", "--tls-cert", "b", "--tls-key", "c", "--policy", "p"}, "TLS runs over tcp"},
		{[]string{"--vip", long + "=10.0.0.1:80"}, "handle: pool handle of 300 bytes; at most 255"},
		{[]string{"--config", file("registrar:\n  peers: [notanaddr]\n")}, `rspxdp node: config ` + dir + `/c32.yaml: registrar.peers[0]: "notanaddr" is not HOST:PORT`},
		{[]string{"--config", file("registrar:\n  timers:\n    keepalive-interval: -1s\n")}, `registrar.timers.keepalive-interval: "-1s" is a negative duration`},
		{[]string{"--config", file("registrar:\n  id: abc\n")}, `line 2: registrar.id: "abc" is not a whole number`},
		{[]string{"--config", file("registrar:\n  max-pools: -1\n"), "--peer", "1.2.3.4:5"}, "registrar.max-pools: -1 is negative"},
	} {
		code, out, errs := runCLI(t, append(append([]string{}, base...), tc.args...)...)
		if code != 2 || out != "" || !strings.Contains(errs, tc.want) || strings.Contains(errs, "!!") {
			t.Errorf("node %v: code %d, stderr %q; want 2 and %q", tc.args, code, errs, tc.want)
		}
	}
	for _, cmd := range [][]string{{"pe", "--listen", "127.0.0.1:0", "--registrar", "127.0.0.1:1"}, {"pu", "--registrar", "127.0.0.1:1", "resolve"}} {
		code, _, errs := runCLI(t, append(cmd, "--pool", long)...)
		if code != 2 || !strings.Contains(errs, "--pool: pool handle of 300 bytes; at most 255") {
			t.Errorf("%s --pool <300 bytes>: code %d, stderr %q", cmd[0], code, errs)
		}
	}
}

// TestNodeLogFormatFromFile: log-format in the YAML selects JSON logs, as
// --log-format does; a bad one is refused naming the field.
func TestNodeLogFormatFromFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "n.yaml")
	if err := os.WriteFile(p, []byte("log-format: xml\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI(t, "node", "--config", p, "-i", "eth0", "--vip", "web=10.0.0.1:80")
	if code != 2 || !strings.Contains(errs, `log-format: "xml" is not text or json`) {
		t.Fatalf("code %d, %q", code, errs)
	}
	if err := os.WriteFile(p, []byte("log-format: json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The node cannot start here (no such interface, maybe no root), but
	// what it logs before failing is JSON.
	_, _, errs = runCLI(t, "node", "--config", p, "-i", "nonexistent0", "--vip", "web=10.0.0.1:80", "--pin-dir", filepath.Join(dir, "pins"),
		"--asap", "127.0.0.1:0", "--enrp", "127.0.0.1:0", "--metrics", "")
	first, _, _ := strings.Cut(errs, "\n")
	if !strings.HasPrefix(first, `{"time":`) {
		t.Fatalf("first log line is not JSON: %q", errs)
	}
}
