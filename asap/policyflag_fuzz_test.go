package asap

import (
	"strconv"
	"strings"
	"testing"

	"github.com/rspxdp/rspxdp/selector/policy"
	"github.com/rspxdp/rspxdp/wire"
)

// formatPolicy writes s in the NAME:V1,V2 form ParsePolicy reads, with the
// values the policy carries on the wire in wire order, in decimal.
func formatPolicy(s policy.Settings) string {
	wp := wire.Policy{Type: wire.PolicyType(s.Type)}
	names, _ := wp.Values()
	byName := map[string]uint32{
		"weight": s.Weight, "priority": s.Weight, "load": s.Load, "loaddeg": s.LoadDegradation,
		"loaddpf": s.LoadDPF, "weightdpf": s.WeightDPF, "distance": s.Distance,
	}
	vals := make([]string, len(names))
	for i, n := range names {
		vals[i] = strconv.FormatUint(uint64(byName[n]), 10)
	}
	if len(vals) == 0 {
		return s.Type.String()
	}
	return s.Type.String() + ":" + strings.Join(vals, ",")
}

// FuzzParsePolicy checks the policy-value parser of --policy flags: no
// panic, only known policy types, no value set that the policy does not
// carry, and format then parse gives the same settings back.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		"rr", "wrr:3", "WeightedRoundRobin:0x10", "prio:9", "LeastUsed:50%", "lud:1000,0x10",
		"lud:10%,1%", "rlu:100%", "lu:NaN%", "lu:1e2%", "lu: 7 ", "wrr:3,4", "PriorityLeastUsedDegradationDPF:1,2,3",
		"fastest", ":", "lu:", "lu:,", "LEASTUSED:-0%",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParsePolicy(in)
		if err != nil {
			return
		}
		if policy.Lookup(s.Type) == nil {
			t.Fatalf("ParsePolicy(%q) gave unknown type %v", in, s.Type)
		}
		wp := wire.Policy{Type: wire.PolicyType(s.Type)}
		names, _ := wp.Values()
		carried := strings.Join(names, " ")
		for name, v := range map[string]uint32{"load": s.Load, "loaddeg": s.LoadDegradation, "loaddpf": s.LoadDPF, "weightdpf": s.WeightDPF, "distance": s.Distance} {
			if v != 0 && !strings.Contains(" "+carried+" ", " "+name+" ") {
				t.Fatalf("ParsePolicy(%q) = %+v sets %s, which %v does not carry", in, s, name, s.Type)
			}
		}
		out := formatPolicy(s)
		back, err := ParsePolicy(out)
		if err != nil {
			t.Fatalf("ParsePolicy(%q) = %+v, formatted %q, which fails: %v", in, s, out, err)
		}
		if back != s {
			t.Fatalf("ParsePolicy(%q) = %+v, formatted %q, parsed back as %+v", in, s, out, back)
		}
	})
}

// TestParsePolicyPercentages pins the percentage edge cases the fuzz seeds
// cover, so a regression shows up in plain `go test`.
func TestParsePolicyPercentages(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"lu:0%", 0, true},
		{"lu:100%", policy.MaxLoad, true},
		{"lu:1e2%", policy.MaxLoad, true},
		{"lu:-0%", 0, true},
		{"lu:NaN%", 0, false},
		{"lu:inf%", 0, false},
		{"lu:100.0001%", 0, false},
	} {
		s, err := ParsePolicy(tc.in)
		if (err == nil) != tc.ok || (tc.ok && s.Load != tc.want) {
			t.Errorf("ParsePolicy(%q) = load %d, %v; want %d ok=%v", tc.in, s.Load, err, tc.want, tc.ok)
		}
	}
}
