package bgp

import (
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	return Config{ASN: 65001, RouterID: "10.0.0.11", Peers: []PeerConfig{{Address: "10.0.0.1", ASN: 65000}}}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"disabled", func(c *Config) { *c = Config{} }, ""},
		{"v6 peer, communities, GR", func(c *Config) {
			c.Peers = append(c.Peers, PeerConfig{Address: "fd00::1", ASN: 65000, HoldTime: 3 * time.Second, Password: "x"})
			c.Communities = []string{"65000:100", "no-export"}
			c.GracefulRestart = 120 * time.Second
		}, ""},
		{"no asn", func(c *Config) { c.ASN = 0 }, "bgp.asn: required"},
		{"no router id", func(c *Config) { c.RouterID = "" }, "bgp.router-id: required"},
		{"v6 router id", func(c *Config) { c.RouterID = "fd00::1" }, `bgp.router-id: "fd00::1" is not an IPv4 address`},
		{"listen port", func(c *Config) { c.ListenPort = -2 }, "bgp.listen-port"},
		{"no peers", func(c *Config) { c.Peers = nil }, "bgp.peers: none given"},
		{"bad peer address", func(c *Config) { c.Peers[0].Address = "router1" }, `bgp.peers[0].address: "router1" is not an IP address`},
		{"duplicate peer", func(c *Config) { c.Peers = append(c.Peers, c.Peers[0]) }, "bgp.peers[1].address: 10.0.0.1 is also bgp.peers[0]"},
		{"peer asn", func(c *Config) { c.Peers[0].ASN = 0 }, "bgp.peers[0].asn: required"},
		{"hold time too short", func(c *Config) { c.Peers[0].HoldTime = 2 * time.Second }, "bgp.peers[0].hold-time: 2s: BGP allows 3s to 65535s"},
		{"hold time fraction", func(c *Config) { c.Peers[0].HoldTime = 3500 * time.Millisecond }, "whole seconds"},
		{"connect retry", func(c *Config) { c.Peers[0].ConnectRetry = 100 * time.Millisecond }, "bgp.peers[0].connect-retry"},
		{"password too long", func(c *Config) { c.Peers[0].Password = strings.Repeat("x", 81) }, "bgp.peers[0].password"},
		{"min pes", func(c *Config) { c.MinPEs = -1 }, "bgp.min-pes"},
		{"drain", func(c *Config) { c.Drain = -time.Second }, "bgp.drain"},
		{"graceful restart", func(c *Config) { c.GracefulRestart = 5000 * time.Second }, "bgp.graceful-restart"},
		{"community", func(c *Config) { c.Communities = []string{"65000:100", "70000:1"} }, `bgp.communities[1]: "70000:1" is not a community`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mod(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := validConfig().WithDefaults()
	p := c.Peers[0]
	if c.ListenPort != 179 || c.MinPEs != 1 || c.Drain != DefaultDrain || p.Port != 179 || p.HoldTime != 90*time.Second || p.ConnectRetry != 5*time.Second {
		t.Errorf("defaults: %+v", c)
	}
}

func TestParseCommunity(t *testing.T) {
	for in, want := range map[string]uint32{"65000:100": 65000<<16 | 100, "0:0": 0, "NO-EXPORT": 0xFFFFFF01, "blackhole": 0xFFFF029A} {
		if got, err := ParseCommunity(in); err != nil || got != want {
			t.Errorf("ParseCommunity(%q) = %#x, %v; want %#x", in, got, err, want)
		}
	}
	for _, in := range []string{"", "65000", "65536:1", "a:b", "1:2:3"} {
		if _, err := ParseCommunity(in); err == nil {
			t.Errorf("ParseCommunity(%q) accepted", in)
		}
	}
}

func TestParsePeer(t *testing.T) {
	p, err := ParsePeer("10.0.0.1,asn=65000,hold-time=9s,password=a=b,port=1179,connect-retry=2s")
	if err != nil {
		t.Fatal(err)
	}
	if want := (PeerConfig{Address: "10.0.0.1", ASN: 65000, HoldTime: 9 * time.Second, Password: "a=b", Port: 1179, ConnectRetry: 2 * time.Second}); p != want {
		t.Errorf("ParsePeer = %+v, want %+v", p, want)
	}
	for s, want := range map[string]string{
		"10.0.0.1":                  "want ADDR,asn=N",
		"10.0.0.1,asn=x":            "asn",
		"10.0.0.1,asn=1,hold=3s":    `unknown key "hold"`,
		"10.0.0.1,asn=1,hold-time":  "not KEY=VALUE",
		"10.0.0.1,asn=1,port=70000": "port",
	} {
		if _, err := ParsePeer(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParsePeer(%q) = %v, want an error containing %q", s, err, want)
		}
	}
}
