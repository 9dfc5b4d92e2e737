package node

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParseConfig feeds arbitrary documents to the configuration parser.
// Whatever it accepts and Validate passes must survive a write-out and
// read-back unchanged and still validate: the node writes nothing back
// today, but operators copy the effective configuration around, and a
// value the parser accepts in a form it cannot read again is a trap.
func FuzzParseConfig(f *testing.F) {
	example, err := os.ReadFile(filepath.Join("..", "rspxdp.example.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	for _, s := range []string{
		"",
		"# only a comment\n",
		"dataplane:\n  interfaces: [eth0]\nvips:\n  - {handle: echo, address: \"10.0.0.1:80\"}\n",
		"dataplane: {interfaces: [lo], table-size: 4294967291}\nvips: [{handle: a, address: \"[::1]:1\", protocol: UDP}]\n",
		"registrar:\n  timers:\n    keepalive-interval: 1h2m3.5s\n",
		"a: &x [*x]\n",
		"vips: [&v {handle: h, address: \"1.2.3.4:5\"}, *v]\n",
		"dataplane:\n  interfacs: [eth0]\n",
		"--- \n...\n---\nmetrics: \"\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		cfg, err := ParseConfig(doc)
		if err != nil {
			return
		}
		if cfg.Validate() != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("a validated config fails its second validation: %v", err)
		}
		out, err := yaml.Marshal(&cfg)
		if err != nil {
			t.Fatalf("marshal a valid config: %v", err)
		}
		again, err := ParseConfig(out)
		if err != nil {
			t.Fatalf("re-read of\n%s\nfailed: %v", out, err)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("re-read of\n%s\nis invalid: %v", out, err)
		}
		if !reflect.DeepEqual(nilEmpty(cfg), nilEmpty(again)) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v\nvia\n%s", cfg, again, out)
		}
	})
}

// nilEmpty makes empty lists nil: YAML writes both as [] and reads []
// back as empty, which is the same configuration.
func nilEmpty(c Config) Config {
	for _, l := range []*[]string{&c.Registrar.Peers, &c.Registrar.AllowHandles, &c.Registrar.AllowNetworks, &c.Registrar.AnnounceTo, &c.Dataplane.Interfaces, &c.Dataplane.ControlNetworks} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	if len(c.VIPs) == 0 {
		c.VIPs = nil
	}
	if len(c.BGP.Communities) == 0 {
		c.BGP.Communities = nil
	}
	if len(c.BGP.Peers) == 0 {
		c.BGP.Peers = nil
	}
	return c
}

// FuzzParseVIP checks the --vip flag parser: no panic, and a VIP it
// accepts prints as a flag that parses to the same VIP.
func FuzzParseVIP(f *testing.F) {
	for _, s := range []string{
		"echo=10.200.1.1:7/tcp", "dns=[fc00:1::53]:53/udp", "s=[::ffff:1.2.3.4]:9/SCTP",
		"a=1.2.3.4:5", "=1.2.3.4:5", "a=1.2.3.4:0/tcp", "a=b=c/d", "a=[fe80::1%eth0]:80/udp",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVIP(s)
		if err != nil {
			return
		}
		w, err := ParseVIP(v.String())
		if err != nil {
			t.Fatalf("ParseVIP(%q) = %v, whose String %q does not parse: %v", s, v, v.String(), err)
		}
		if w != v {
			t.Fatalf("ParseVIP(%q) = %+v, re-parsed from %q as %+v", s, v, v.String(), w)
		}
	})
}

// TestIsPrimeFullRange covers table sizes past 65535², where a 32-bit
// square of the trial divisor used to wrap and call the largest 32-bit
// prime composite after four billion divisions.
func TestIsPrimeFullRange(t *testing.T) {
	for _, tc := range []struct {
		n    uint32
		want bool
	}{
		{0, false}, {1, false}, {2, true}, {65537, true}, {65535, false},
		{4294967291, true},  // largest 32-bit prime
		{4293001441, false}, // 65521², the largest prime square
		{4294967295, false}, // 3·5·17·257·65537
		{4294836225, false}, // 65535²
	} {
		if got := isPrime(tc.n); got != tc.want {
			t.Errorf("isPrime(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}
