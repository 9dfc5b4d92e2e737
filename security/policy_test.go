package security

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func loadExample(t *testing.T) *Policy {
	t.Helper()
	p, err := LoadPolicy(filepath.Join("testdata", "policy.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExamplePolicyDecisions(t *testing.T) {
	p := loadExample(t)
	if p.Len() != 5 {
		t.Fatalf("%d rules, want 5", p.Len())
	}
	echo1 := Identity{"rspxdp://pe/echo-1", "echo-1"}
	batch := Identity{"rspxdp://pe/batch-worker-1"}
	reg := Identity{"rspxdp://registrar/reg1", "reg1"}
	pu := Identity{"rspxdp://pu/client"}
	mon := Identity{"monitor.example.net"}
	lan := netip.MustParseAddr("10.9.8.7")
	lo := netip.MustParseAddr("127.0.0.1")
	wan := netip.MustParseAddr("203.0.113.5")
	mapped := netip.MustParseAddr("::ffff:10.9.8.7")
	for _, tc := range []struct {
		name string
		got  bool
		want bool
	}{
		{"echo PE registers echo from LAN", p.MayRegister(echo1, []byte("echo"), lan), true},
		{"echo PE registers echo from loopback", p.MayRegister(echo1, []byte("echo"), lo), true},
		{"echo PE registers echo from v4-mapped LAN", p.MayRegister(echo1, []byte("echo"), mapped), true},
		{"echo PE registers echo-staging", p.MayRegister(echo1, []byte("echo-staging"), lan), true},
		{"echo PE registers echo from the Internet", p.MayRegister(echo1, []byte("echo"), wan), false},
		{"echo PE registers another pool", p.MayRegister(echo1, []byte("payments"), lan), false},
		{"echo PE registers a prefix of its pool", p.MayRegister(echo1, []byte("ech"), lan), false},
		{"echo PE with invalid source", p.MayRegister(echo1, []byte("echo"), netip.Addr{}), false},
		{"batch worker from its host", p.MayRegister(batch, []byte("batch-nightly"), netip.MustParseAddr("10.1.2.3")), true},
		{"batch worker from another host", p.MayRegister(batch, []byte("batch-nightly"), netip.MustParseAddr("10.1.2.4")), false},
		{"echo PE may not peer", p.MayPeer(echo1), false},
		{"registrar may peer", p.MayPeer(reg), true},
		{"registrar may not register", p.MayRegister(reg, []byte("echo"), lo), false},
		{"PU resolves echo", p.MayResolve(pu, []byte("echo")), true},
		{"PU resolves batch-x", p.MayResolve(pu, []byte("batch-x")), true},
		{"PU resolves private pool", p.MayResolve(pu, []byte("payments")), false},
		{"PU may not register", p.MayRegister(pu, []byte("echo"), lo), false},
		{"PU may not peer", p.MayPeer(pu), false},
		{"DNS identity resolves anything", p.MayResolve(mon, []byte("payments")), true},
		{"unauthenticated may nothing", p.MayResolve(nil, []byte("echo")), false},
		{"nil policy grants nothing", (*Policy)(nil).MayPeer(reg), false},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

// TestRFC5355_MasqueradingPE (RFC 5355 2.2, 2.4): a PE with a valid
// certificate cannot register under a pool its identity is not granted,
// nor pass for another PE: the identity comes from the verified
// certificate, not from anything in the Registration.
func TestRFC5355_MasqueradingPE(t *testing.T) {
	p := loadExample(t)
	pki := newTestPKI(t, "CA")
	evil := mustReloader(t, pki.issue(RolePE, "evil"))
	echo := mustReloader(t, pki.issue(RolePE, "echo-2"))
	src := netip.MustParseAddr("10.0.0.9")
	if p.MayRegister(CertIdentity(evil.Leaf()), []byte("echo"), src) {
		t.Error("rspxdp://pe/evil may register under echo")
	}
	if !p.MayRegister(CertIdentity(echo.Leaf()), []byte("echo"), src) {
		t.Error("rspxdp://pe/echo-2 may not register under echo")
	}
}

// TestRFC5355_SpoofedDeregistration (RFC 5355 2.3): only the identity
// that registered a PE identifier may deregister or re-register it.
func TestRFC5355_SpoofedDeregistration(t *testing.T) {
	owner := Identity{"rspxdp://pe/echo-1", "echo-1"}
	for _, tc := range []struct {
		name  string
		owner string
		who   Identity
		ok    bool
	}{
		{"owner deregisters", owner.Key(), owner, true},
		{"other PE deregisters", owner.Key(), Identity{"rspxdp://pe/echo-2"}, false},
		{"other PE whose second SAN is the owner's first", owner.Key(), Identity{"rspxdp://pe/evil", "rspxdp://pe/echo-1"}, false},
		{"unauthenticated deregisters a PE registered over TLS", owner.Key(), nil, false},
		{"plain-TCP PE deregisters by plain TCP", "", nil, true},
		{"authenticated caller and unowned PE", "", owner, false},
	} {
		err := CheckOwner(tc.owner, tc.who)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "owned by") {
			t.Errorf("%s: error %q does not say who owns the PE", tc.name, err)
		}
	}
}

func TestParsePolicyErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []string // substrings of the error
	}{
		{"empty", "", []string{"empty file"}},
		{"unknown top-level field", "version: 1\nrules: []\nrulez: []\n", []string{"line 3", "rulez"}},
		{"unknown rule field", "version: 1\nrules:\n  - identity: a\n    peer: true\n    regiser: [x]\n", []string{"line 5", "regiser"}},
		{"missing version", "rules: []\n", []string{"version must be 1"}},
		{"future version", "version: 2\nrules: []\n", []string{"line 1", "version must be 1, got 2"}},
		{"no rules key", "version: 1\n", []string{"no rules key"}},
		{"wrong type", "version: 1\nrules:\n  - identity: a\n    peer: yes please\n", []string{"line 4"}},
		{"empty identity", "version: 1\nrules:\n  - peer: true\n", []string{"line 3", "rules[0]", "empty pattern"}},
		{"grants nothing", "version: 1\nrules:\n  - identity: a\n", []string{"line 3", "granted nothing"}},
		{"bad network", "version: 1\nrules:\n  - identity: a\n    register: [x]\n    networks:\n      - 10.0.0.0/8\n      - 10.0.0.300/8\n", []string{"line 7", "networks[1]"}},
		{"host bits", "version: 1\nrules:\n  - identity: a\n    register: [x]\n    networks: [10.0.0.1/8]\n", []string{"line 5", "10.0.0.0/8"}},
		{"bad register glob", "version: 1\nrules:\n  - identity: a\n    register:\n      - ok\n      - 'bad\\'\n", []string{"line 6", "register[1]"}},
		{"second document", "version: 1\nrules: []\n---\nversion: 1\nrules: []\n", []string{"line 3", "second YAML document"}},
		{"not a mapping", "- a\n- b\n", []string{"line 1"}},
		{"syntax error", "version: 1\nrules: [\n", []string{"policy"}},
	} {
		_, err := ParsePolicy([]byte(tc.in))
		if err == nil {
			t.Errorf("%s: parsed", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", tc.name, err, w)
			}
		}
	}
	if _, err := ParsePolicy(make([]byte, MaxPolicySize+1)); err == nil {
		t.Error("oversized policy parsed")
	}
}

func TestPolicyFileReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	id := Identity{"rspxdp://pu/a"}
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("version: 1\nrules:\n  - identity: rspxdp://pu/*\n    resolve: [echo]\n")
	pf, err := OpenPolicyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !pf.Current().MayResolve(id, []byte("echo")) {
		t.Fatal("initial policy refuses")
	}
	write("version: 1\nrules:\n  - identity: rspxdp://pu/*\n    resolve: [other]\n")
	if err := pf.Reload(); err != nil {
		t.Fatal(err)
	}
	if pf.Current().MayResolve(id, []byte("echo")) {
		t.Fatal("reloaded policy still grants echo")
	}
	write("version: 1\nrules:\n  - identity: rspxdp://pu/*\n    resolv: [echo]\n")
	if err := pf.Reload(); err == nil {
		t.Fatal("broken policy reloaded")
	}
	if !pf.Current().MayResolve(id, []byte("other")) {
		t.Fatal("a failed reload changed the policy in force")
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"echo", "echo", true},
		{"echo", "echo2", false},
		{"echo*", "echo", true},
		{"echo*", "echo-1/x", true},
		{"rspxdp://pe/*", "rspxdp://pe/echo-1", true},
		{"rspxdp://pe/*", "rspxdp://pu/echo-1", false},
		{"*", "", true},
		{"?", "", false},
		{"?", "a", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbY", false},
		{"*a*a*a*a*a*a*a*b", strings.Repeat("a", 200), false},
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		{`a\?`, "a?", true},
		{`\\`, `\`, true},
	} {
		if got := Match(tc.p, tc.s); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.p, tc.s, got, tc.want)
		}
	}
	for _, bad := range []string{"", `x\`, `x\\\`, strings.Repeat("a", MaxPatternLen+1)} {
		if ValidatePattern(bad) == nil {
			t.Errorf("ValidatePattern(%q) accepted", bad)
		}
	}
	if err := ValidatePattern(`x\\`); err != nil {
		t.Errorf("ValidatePattern(`x\\\\`): %v", err)
	}
}

// FuzzParsePolicy: the parser never panics, and a policy that parses
// answers every question without panicking, consistently.
func FuzzParsePolicy(f *testing.F) {
	ex, err := os.ReadFile(filepath.Join("testdata", "policy.example.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ex, "rspxdp://pe/echo-1", "echo")
	f.Add([]byte("version: 1\nrules:\n  - identity: '*'\n    peer: true\n"), "x", "")
	f.Add([]byte("version: 1\nrules: [{identity: a, register: ['*'], networks: ['::/0']}]\n"), "a", "h")
	f.Add([]byte("&a [*a, *a]"), "", "")
	f.Fuzz(func(t *testing.T, data []byte, ident, handle string) {
		p, err := ParsePolicy(data)
		if err != nil {
			if p != nil {
				t.Fatal("policy returned with an error")
			}
			return
		}
		id := Identity{ident}
		src := netip.MustParseAddr("10.0.0.1")
		a := p.MayRegister(id, []byte(handle), src)
		b := p.MayRegister(id, []byte(handle), src)
		if a != b {
			t.Fatal("MayRegister not deterministic")
		}
		_ = p.MayPeer(id)
		_ = p.MayResolve(id, []byte(handle))
		if p.MayPeer(nil) || p.MayResolve(nil, []byte(handle)) {
			t.Fatal("unauthenticated identity granted something")
		}
	})
}

// globRegexp is an independent reading of the pattern syntax, to check
// Match against.
func globRegexp(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`(?s)\A`)
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '\\':
			i++
			b.WriteString(regexp.QuoteMeta(string(p[i])))
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(`\z`)
	return regexp.MustCompile(b.String())
}

// FuzzMatch checks Match against the regexp reading of the same pattern
// on ASCII inputs (regexp's '.' is a rune, Match's '?' a byte).
func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{{"rspxdp://pe/*", "rspxdp://pe/a"}, {`a\*b?`, "a*bc"}, {"*a*b", "xaxb"}, {"", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, p, s string) {
		for _, r := range p + s {
			if r >= 0x80 {
				return
			}
		}
		if ValidatePattern(p) != nil {
			return
		}
		if got, want := Match(p, s), globRegexp(p).MatchString(s); got != want {
			t.Fatalf("Match(%q, %q) = %v, regexp says %v", p, s, got, want)
		}
	})
}
