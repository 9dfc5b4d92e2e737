package asap

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/rspxdp/rspxdp/selector/policy"
	"github.com/rspxdp/rspxdp/wire"
)

// policyAliases are the short names command lines accept besides the
// rsplib names of package policy.
var policyAliases = map[string]policy.Type{
	"rr":    policy.TypeRoundRobin,
	"wrr":   policy.TypeWeightedRoundRobin,
	"rand":  policy.TypeRandom,
	"wrand": policy.TypeWeightedRandom,
	"prio":  policy.TypePriority,
	"lu":    policy.TypeLeastUsed,
	"lud":   policy.TypeLeastUsedDegradation,
	"plu":   policy.TypePriorityLeastUsed,
	"rlu":   policy.TypeRandomizedLeastUsed,
}

// PolicyNames lists the accepted policy names (rsplib's), for help texts.
func PolicyNames() []string {
	var n []string
	for _, a := range policy.All() {
		n = append(n, a.Name)
	}
	return n
}

// ParsePolicy parses NAME[:V1,V2,...], e.g. "WeightedRoundRobin:3",
// "wrr:3", "LeastUsed:25%" or "LeastUsedDegradation:10%,1%". Names are
// case-insensitive. The values are the policy's wire values in wire order
// (weight, priority, load, load degradation, load DPF, weight DPF); loads,
// degradations and DPFs may be given as percentages of the full range.
// Missing values are 0, except a weight, which defaults to 1.
func ParsePolicy(s string) (policy.Settings, error) {
	name, vals, _ := strings.Cut(s, ":")
	var t policy.Type
	found := false
	if a, ok := policyAliases[strings.ToLower(name)]; ok {
		t, found = a, true
	}
	for _, a := range policy.All() {
		if strings.EqualFold(a.Name, name) {
			t, found = a.Type, true
		}
	}
	if !found {
		return policy.Settings{}, fmt.Errorf("unknown policy %q (known: %s; short: rr, wrr, rand, wrand, prio, lu, lud, plu, rlu)",
			name, strings.Join(PolicyNames(), ", "))
	}
	wp := wire.Policy{Type: wire.PolicyType(t)}
	names, _ := wp.Values()
	set := policy.Settings{Type: t}
	for _, n := range names {
		if n == "weight" {
			set.Weight = 1
		}
	}
	if vals == "" {
		return set, nil
	}
	parts := strings.Split(vals, ",")
	if len(parts) > len(names) {
		return policy.Settings{}, fmt.Errorf("policy %s takes %d value(s) (%s), got %d", t, len(names), strings.Join(names, ", "), len(parts))
	}
	for i, p := range parts {
		v, err := parseValue(p, names[i] != "weight" && names[i] != "priority" && names[i] != "distance")
		if err != nil {
			return policy.Settings{}, fmt.Errorf("policy %s value %s %q: %w", t, names[i], p, err)
		}
		switch names[i] {
		case "weight", "priority":
			set.Weight = v
		case "load":
			set.Load = v
		case "loaddeg":
			set.LoadDegradation = v
		case "loaddpf":
			set.LoadDPF = v
		case "weightdpf":
			set.WeightDPF = v
		case "distance":
			set.Distance = v
		}
	}
	return set, nil
}

func parseValue(s string, fraction bool) (uint32, error) {
	s = strings.TrimSpace(s)
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		if !fraction {
			return 0, fmt.Errorf("not a fraction: give a number")
		}
		f, err := strconv.ParseFloat(pct, 64)
		// Written so that NaN, which fails every comparison, is refused too.
		if err != nil || !(f >= 0 && f <= 100) {
			return 0, fmt.Errorf("want a percentage 0-100%%")
		}
		return uint32(f / 100 * float64(policy.MaxLoad)), nil
	}
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return 0, fmt.Errorf("want a 32-bit number")
	}
	return uint32(v), nil
}

// FormatPolicy writes settings the way ParsePolicy reads them and an
// operator enters them: the short name and the values in wire order, loads,
// degradations and DPFs as percentages ("lu:20%", "lud:10%,1%", "wrr:3").
// ParsePolicy(FormatPolicy(s)) gives s back, to the percentages' rounding.
func FormatPolicy(s policy.Settings) string {
	name := s.Type.String()
	for alias, t := range policyAliases {
		if t == s.Type {
			name = alias
		}
	}
	wp := wire.Policy{Type: wire.PolicyType(s.Type)}
	names, _ := wp.Values()
	if len(names) == 0 {
		return name
	}
	vals := make([]string, len(names))
	for i, n := range names {
		switch n {
		case "weight", "priority":
			vals[i] = strconv.FormatUint(uint64(s.Weight), 10)
		case "distance":
			vals[i] = strconv.FormatUint(uint64(s.Distance), 10)
		default:
			v := map[string]uint32{"load": s.Load, "loaddeg": s.LoadDegradation, "loaddpf": s.LoadDPF, "weightdpf": s.WeightDPF}[n]
			pct := math.Round(float64(v)/float64(policy.MaxLoad)*100*1000) / 1000
			vals[i] = strconv.FormatFloat(pct, 'f', -1, 64) + "%"
		}
	}
	return name + ":" + strings.Join(vals, ",")
}
