package security

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync/atomic"

	"go.yaml.in/yaml/v3"
)

// MaxPolicySize bounds a policy file: far above any real one, low enough
// that a wrong path (a log file, a disk image) fails fast.
const MaxPolicySize = 1 << 20

// Policy says what each authenticated identity may do. Everything not
// granted by a rule is refused, and an unauthenticated Identity matches
// no rule. A Policy is immutable once parsed; swap whole policies to
// reload (PolicyFile does).
type Policy struct {
	rules []rule
}

// rule is one validated entry of the file.
type rule struct {
	identity string
	register []string
	resolve  []string
	peer     bool
	networks []netip.Prefix
	line     int
}

// rawPolicy is the file's schema; field names are the YAML keys.
type rawPolicy struct {
	Version int       `yaml:"version"`
	Rules   []rawRule `yaml:"rules"`
}

type rawRule struct {
	Identity string   `yaml:"identity"`
	Register []string `yaml:"register"`
	Resolve  []string `yaml:"resolve"`
	Peer     bool     `yaml:"peer"`
	Networks []string `yaml:"networks"`
}

// PolicyVersion is the only schema version ParsePolicy accepts; a file
// written for a later schema is refused rather than half understood.
const PolicyVersion = 1

// ParsePolicy parses a policy file (see testdata/policy.example.yaml).
// Parsing is strict: an unknown key, a wrong type, a bad glob or CIDR, a
// second YAML document or a missing version is an error naming the line.
func ParsePolicy(data []byte) (*Policy, error) {
	if len(data) > MaxPolicySize {
		return nil, fmt.Errorf("policy: %d bytes, more than the %d allowed", len(data), MaxPolicySize)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("policy: empty file (a policy that grants nothing must say so with `rules: []`)")
		}
		return nil, fmt.Errorf("policy: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		return nil, fmt.Errorf("policy line %d: a second YAML document; one file holds one policy", extra.Line)
	}

	var raw rawPolicy
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(&raw); err != nil {
		// yaml.v3 already says "line N: field X not found in type ...".
		return nil, fmt.Errorf("policy: %w", err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if raw.Version != PolicyVersion {
		return nil, fmt.Errorf("policy line %d: version must be %d, got %d", keyLine(root, "version", root.Line), PolicyVersion, raw.Version)
	}
	if valueNode(root, "rules") == nil {
		return nil, fmt.Errorf("policy line %d: no rules key (write `rules: []` to grant nothing)", root.Line)
	}
	ruleNodes := valueNode(root, "rules")
	p := &Policy{rules: make([]rule, 0, len(raw.Rules))}
	for i, rr := range raw.Rules {
		var rn *yaml.Node
		if ruleNodes != nil && i < len(ruleNodes.Content) {
			rn = ruleNodes.Content[i]
		}
		r, err := buildRule(rr, rn)
		if err != nil {
			return nil, fmt.Errorf("policy line %d: rules[%d]: %w", errLine(err, rn), i, err)
		}
		p.rules = append(p.rules, r)
	}
	return p, nil
}

// lineError carries the line of the offending item inside a rule.
type lineError struct {
	line int
	err  error
}

func (e *lineError) Error() string { return e.err.Error() }
func (e *lineError) Unwrap() error { return e.err }

func errLine(err error, rn *yaml.Node) int {
	var le *lineError
	if errors.As(err, &le) && le.line > 0 {
		return le.line
	}
	if rn != nil {
		return rn.Line
	}
	return 0
}

func buildRule(rr rawRule, rn *yaml.Node) (rule, error) {
	r := rule{identity: rr.Identity, peer: rr.Peer}
	if rn != nil {
		r.line = rn.Line
	}
	if err := ValidatePattern(rr.Identity); err != nil {
		return r, &lineError{keyLine(rn, "identity", r.line), fmt.Errorf("identity %q: %w", rr.Identity, err)}
	}
	patterns := func(key string, in []string) ([]string, error) {
		for j, p := range in {
			if err := ValidatePattern(p); err != nil {
				return nil, &lineError{itemLine(rn, key, j, r.line), fmt.Errorf("%s[%d] %q: %w", key, j, p, err)}
			}
		}
		return append([]string(nil), in...), nil
	}
	var err error
	if r.register, err = patterns("register", rr.Register); err != nil {
		return r, err
	}
	if r.resolve, err = patterns("resolve", rr.Resolve); err != nil {
		return r, err
	}
	for j, n := range rr.Networks {
		pfx, err := netip.ParsePrefix(n)
		if err != nil {
			// A bare address is a one-host network.
			a, aerr := netip.ParseAddr(n)
			if aerr != nil {
				return r, &lineError{itemLine(rn, "networks", j, r.line), fmt.Errorf("networks[%d] %q: not a CIDR prefix or address", j, n)}
			}
			pfx = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if pfx.Masked() != pfx {
			return r, &lineError{itemLine(rn, "networks", j, r.line), fmt.Errorf("networks[%d] %q: host bits set (did you mean %s?)", j, n, pfx.Masked())}
		}
		if pfx.Addr().Is4In6() && pfx.Bits() >= 96 {
			// Sources are compared unmapped, so store the IPv4 form.
			pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
		}
		r.networks = append(r.networks, pfx)
	}
	if len(r.register) == 0 && len(r.resolve) == 0 && !r.peer {
		return r, &lineError{r.line, fmt.Errorf("identity %q is granted nothing (register, resolve or peer)", rr.Identity)}
	}
	return r, nil
}

// valueNode returns the value of key in mapping m, or nil.
func valueNode(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func keyLine(m *yaml.Node, key string, def int) int {
	if v := valueNode(m, key); v != nil {
		return v.Line
	}
	return def
}

func itemLine(m *yaml.Node, key string, i, def int) int {
	if v := valueNode(m, key); v != nil && v.Kind == yaml.SequenceNode && i < len(v.Content) {
		return v.Content[i].Line
	}
	return def
}

// LoadPolicy reads and parses a policy file.
func LoadPolicy(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("load policy %s: %w", path, err)
	}
	p, err := ParsePolicy(data)
	if err != nil {
		return nil, fmt.Errorf("load policy %s: %w", path, err)
	}
	return p, nil
}

// matching calls f for every rule whose identity pattern matches id and
// reports whether any call returned true.
func (p *Policy) matching(id Identity, f func(*rule) bool) bool {
	if p == nil || !id.Authenticated() {
		return false
	}
	for i := range p.rules {
		r := &p.rules[i]
		if id.Matches(r.identity) && f(r) {
			return true
		}
	}
	return false
}

func anyMatch(patterns []string, s string) bool {
	for _, p := range patterns {
		if Match(p, s) {
			return true
		}
	}
	return false
}

func (r *rule) fromNetwork(src netip.Addr) bool {
	if len(r.networks) == 0 {
		return true
	}
	src = src.Unmap()
	for _, n := range r.networks {
		if n.Contains(src) {
			return true
		}
	}
	return false
}

// MayRegister reports whether id may register (or re-register) a PE under
// pool handle when its registration arrives from src. Rules are a union:
// one rule that matches the identity, the handle and the source network
// is enough. An invalid src only passes rules without networks.
func (p *Policy) MayRegister(id Identity, handle []byte, src netip.Addr) bool {
	return p.matching(id, func(r *rule) bool {
		return anyMatch(r.register, string(handle)) && r.fromNetwork(src)
	})
}

// MayPeer reports whether id may act as a registrar peer: send ENRP
// Handle Updates, Takeovers, list and table requests.
func (p *Policy) MayPeer(id Identity) bool {
	return p.matching(id, func(r *rule) bool { return r.peer })
}

// MayResolve reports whether id may resolve pool handle.
func (p *Policy) MayResolve(id Identity, handle []byte) bool {
	return p.matching(id, func(r *rule) bool { return anyMatch(r.resolve, string(handle)) })
}

// Len returns the number of rules.
func (p *Policy) Len() int { return len(p.rules) }

// PolicyFile is a policy loaded from a path that can be reloaded (on
// SIGHUP) while readers keep calling Current.
type PolicyFile struct {
	path string
	cur  atomic.Pointer[Policy]
}

// OpenPolicyFile loads path; it fails if the file does not parse.
func OpenPolicyFile(path string) (*PolicyFile, error) {
	pf := &PolicyFile{path: path}
	if err := pf.Reload(); err != nil {
		return nil, err
	}
	return pf, nil
}

// Reload re-reads the file; on error the previous policy stays in force.
func (pf *PolicyFile) Reload() error {
	p, err := LoadPolicy(pf.path)
	if err != nil {
		return err
	}
	pf.cur.Store(p)
	return nil
}

// Current returns the policy in force.
func (pf *PolicyFile) Current() *Policy { return pf.cur.Load() }
