package node

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/loader"
)

func validConfig() Config {
	c := Defaults()
	c.Dataplane.Interfaces = []string{"eth0"}
	c.VIPs = []VIP{{Handle: "echo", Address: "10.200.1.1:80", Protocol: "tcp"}}
	return c
}

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"valid v6 udp", func(c *Config) { c.VIPs[0] = VIP{Handle: "dns", Address: "[fc00:1::1]:53", Protocol: "udp"} }, ""},
		{"no interfaces", func(c *Config) { c.Dataplane.Interfaces = nil }, "dataplane.interfaces"},
		{"bad interface", func(c *Config) { c.Dataplane.Interfaces = []string{"a/b"} }, "dataplane.interfaces[0]"},
		{"bad mode", func(c *Config) { c.Dataplane.Mode = "turbo" }, "dataplane.mode"},
		{"bad forwarding", func(c *Config) { c.Dataplane.Forwarding = "gre" }, "dataplane.forwarding"},
		{"table not prime", func(c *Config) { c.Dataplane.TableSize = 65536 }, "dataplane.table-size"},
		{"v6 as source-v4", func(c *Config) { c.Dataplane.SourceV4 = "fc00::1" }, "dataplane.source-v4"},
		{"no vips", func(c *Config) { c.VIPs = nil }, "vips: none"},
		{"vip without port", func(c *Config) { c.VIPs[0].Address = "10.0.0.1" }, "vips[0].address"},
		{"vip bad proto", func(c *Config) { c.VIPs[0].Protocol = "icmp" }, "vips[0].protocol"},
		{"vip empty handle", func(c *Config) { c.VIPs[0].Handle = "" }, "vips[0].handle"},
		{"duplicate vip", func(c *Config) {
			c.VIPs = append(c.VIPs, VIP{Handle: "other", Address: "10.200.1.1:80", Protocol: "tcp"})
		}, "vips[1]"},
		{"bad peer", func(c *Config) { c.Registrar.Peers = []string{"nohostport"} }, "registrar.peers[0]"},
		{"bad transport", func(c *Config) { c.Registrar.Transport = "quic" }, "registrar.transport"},
		{"bad network", func(c *Config) { c.Registrar.AllowNetworks = []string{"10.0.0.0"} }, "registrar.allow-networks[0]"},
		{"bad metrics", func(c *Config) { c.Metrics = "localhost" }, "metrics"},
		{"tls without key", func(c *Config) { c.Registrar.TLS = TLSConfig{CA: "ca.pem", Cert: "c.pem", Policy: "p.yaml"} }, "registrar.tls: ca, cert and key"},
		{"tls without policy", func(c *Config) { c.Registrar.TLS = TLSConfig{CA: "ca.pem", Cert: "c.pem", Key: "k.pem"} }, "registrar.tls.policy"},
		{"policy without tls", func(c *Config) { c.Registrar.TLS = TLSConfig{Policy: "p.yaml"} }, "registrar.tls.policy"},
		{"tls over sctp", func(c *Config) {
			c.Registrar.Transport = "sctp"
			c.Registrar.TLS = TLSConfig{CA: "ca.pem", Cert: "c.pem", Key: "k.pem", Policy: "p.yaml"}
		}, "registrar.tls: TLS runs over tcp"},
		{"negative bound", func(c *Config) { c.Registrar.MaxPools = -1 }, "registrar.max-pools: -1 is negative"},
		{"tls valid", func(c *Config) {
			c.Registrar.TLS = TLSConfig{CA: "ca.pem", Cert: "c.pem", Key: "k.pem", Policy: "p.yaml", MaxResolutionRate: 100}
		}, ""},
		{"reconcile too fast", func(c *Config) { c.ReconcileEvery = Duration(time.Millisecond) }, "reconcile-every"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mutate(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
				t.Fatalf("Validate() = %v, want an error starting %q", err, tc.want)
			}
		})
	}
}

func TestParseVIP(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"echo=10.200.1.1:80/tcp", "10.200.1.1:80/tcp", true},
		{"echo=10.200.1.1:7", "10.200.1.1:7/tcp", true},
		{"dns=[fc00:1::1]:53/udp", "[fc00:1::1]:53/udp", true},
		{"sig=10.0.0.1:2905/SCTP", "10.0.0.1:2905/sctp", true},
		{"=10.0.0.1:80/tcp", "", false},
		{"echo10.0.0.1:80", "", false},
		{"echo=10.0.0.1:0/tcp", "", false},
		{"echo=fc00::1:80/tcp", "", false},
	} {
		v, err := ParseVIP(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseVIP(%q) error %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && fmtKey(v.Key()) != tc.want {
			t.Errorf("ParseVIP(%q) key %s, want %s", tc.in, fmtKey(v.Key()), tc.want)
		}
	}
}

// The commented example in the repository must stay loadable and valid.
func TestExampleConfig(t *testing.T) {
	c, err := LoadFile(filepath.Join("..", "rspxdp.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("example config invalid: %v", err)
	}
	if len(c.VIPs) != 2 || c.Registrar.Timers.KeepAliveInterval.D() != 5*time.Second {
		t.Fatalf("example config read as %+v", c)
	}
}

func TestLoadFileRejectsUnknownAndBadFields(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ body, want string }{
		{"dataplane:\n  interfacs: [eth0]\n", "interfacs"},
		{"registrar:\n  timers:\n    keepalive-interval: fast\n", "not a duration"},
		{"vips: 3\n", `vips: "3" is not a list`},
	} {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadFile(p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadFile(%q) = %v, want error containing %q", tc.body, err, tc.want)
		}
	}
	if _, err := LoadFile(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("LoadFile of a missing file succeeded")
	}
}

// TestConfigBGP: the bgp section reads from YAML and its errors name the
// field as the file spells it.
func TestConfigBGP(t *testing.T) {
	base := "dataplane:\n  interfaces: [eth0]\nvips:\n  - {handle: web, address: \"10.200.1.1:80\"}\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"two peers", "bgp:\n  asn: 65001\n  router-id: 10.0.0.11\n  drain: 3s\n  communities: [\"65001:80\"]\n  peers:\n" +
			"    - {address: 10.0.0.1, asn: 65000, hold-time: 9s, password: pw}\n    - {address: \"fd00::1\", asn: 65000}\n", ""},
		{"peer without asn", "bgp:\n  asn: 65001\n  router-id: 10.0.0.11\n  peers:\n    - {address: 10.0.0.1}\n", "bgp.peers[0].asn: required"},
		{"typo", "bgp:\n  asn: 65001\n  routerid: 10.0.0.11\n", "routerid"},
		{"bad duration", "bgp:\n  drain: soon\n", "soon"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(base + tc.yaml))
			if err == nil {
				err = cfg.Validate()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
			if tc.want == "" && (cfg.BGP.Drain != 3*time.Second || cfg.BGP.Peers[0].HoldTime != 9*time.Second || cfg.BGP.Peers[1].Address != "fd00::1") {
				t.Errorf("parsed %+v", cfg.BGP)
			}
		})
	}
}

// TestYAMLErrorsNameTheField: type errors say which field and what it
// takes, never a Go type.
func TestYAMLErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"registrar:\n  id: abc\n", `line 2: registrar.id: "abc" is not a whole number from 0 to 4294967295`},
		{"registrar: {id: abc}\n", `line 1: registrar.id: "abc" is not a whole number from 0 to 4294967295`},
		{"registrar:\n  peers: 5\n", `line 2: registrar.peers: "5" is not a list`},
		{"registrar:\n  peers: [\"1.2.3.4:5\", {a: 1}]\n", `line 2: registrar.peers[1]: a mapping is not a string`},
		{"registrar:\n  announce: maybe\n", `line 2: registrar.announce: "maybe" is not true or false`},
		{"registrar:\n  bogus: 1\n", `line 2: registrar.bogus: unknown field`},
		{"registrar:\n  timers:\n    keepalive-interval: -1s\n", `line 3: registrar.timers.keepalive-interval: "-1s" is a negative duration`},
		{"registrar:\n  timers:\n    drain-timeout: [1]\n", `line 3: registrar.timers.drain-timeout: not a duration`},
		{"vips:\n  - {handle: x, address: [1]}\n", `line 2: vips[0].address: a list is not a string`},
		{"dataplane:\n  table-size: -5\n", `line 2: dataplane.table-size: "-5" is not a whole number from 0 to 4294967295`},
		{"registrar:\n  id: 1\n  id: 2\n", `line 3: registrar.id: given twice`},
	} {
		_, err := ParseConfig([]byte(tc.doc))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "!!") || strings.Contains(err.Error(), "uint32") {
			t.Errorf("%q: %v, want an error starting %q", tc.doc, err, tc.want)
		}
	}
}

func TestValidateHandleLimit(t *testing.T) {
	long := strings.Repeat("h", 300)
	c := validConfig()
	c.VIPs[0].Handle = long
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "vips[0].handle: pool handle of 300 bytes; at most 255") {
		t.Fatalf("300-byte VIP handle: %v", err)
	}
	c = validConfig()
	c.Registrar.AllowHandles = []string{"ok", long}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "registrar.allow-handles[1]: pool handle of 300 bytes; at most 255") {
		t.Fatalf("300-byte allowed handle: %v", err)
	}
	c = validConfig()
	c.VIPs[0].Handle = strings.Repeat("h", 255)
	if err := c.Validate(); err != nil {
		t.Fatalf("255-byte handle: %v", err)
	}
}

// TestFloodLimitOptions: the flood guard is on at Katran's limit by default,
// 0 in the configuration turns it off, any other value is passed on.
func TestFloodLimitOptions(t *testing.T) {
	for _, c := range []struct {
		name string
		set  func(*Config)
		want uint32
	}{
		{"default", func(*Config) {}, loader.DefaultFloodLimit},
		{"off", func(c *Config) { c.Dataplane.FloodLimit = 0 }, loader.NoFloodLimit},
		{"set", func(c *Config) { c.Dataplane.FloodLimit = 5000 }, 5000},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Defaults()
			c.set(&cfg)
			o, err := loaderOptions(cfg, slog.Default())
			if err != nil {
				t.Fatal(err)
			}
			if o.FloodLimit != c.want {
				t.Errorf("loader flood limit %d, want %d", o.FloodLimit, c.want)
			}
		})
	}
}
