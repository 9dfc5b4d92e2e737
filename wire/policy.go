package wire

import "fmt"

// PolicyType is a pool member selection policy type (RFC 5356 section 4,
// with rsplib's additions).
type PolicyType uint32

// Policy types. The RFC 5356 ones first, then rsplib's Priority and its two
// extended families (0xb0001xxx randomized/degradation variants, 0xb0002xxx
// delay penalty factor variants).
const (
	PolicyRoundRobin                             PolicyType = 0x00000001
	PolicyWeightedRoundRobin                     PolicyType = 0x00000002
	PolicyRandom                                 PolicyType = 0x00000003
	PolicyWeightedRandom                         PolicyType = 0x00000004
	PolicyPriority                               PolicyType = 0x00000005
	PolicyLeastUsed                              PolicyType = 0x40000001
	PolicyLeastUsedDegradation                   PolicyType = 0x40000002
	PolicyPriorityLeastUsed                      PolicyType = 0x40000003
	PolicyRandomizedLeastUsed                    PolicyType = 0x40000004
	PolicyRandomizedPriorityLeastUsed            PolicyType = 0xb0001001
	PolicyRandomizedLeastUsedDegradation         PolicyType = 0xb0001002
	PolicyPriorityLeastUsedDegradation           PolicyType = 0xb0001003
	PolicyRandomizedPriorityLeastUsedDegradation PolicyType = 0xb0001004
	PolicyWeightedRandomDPF                      PolicyType = 0xb0002001
	PolicyLeastUsedDPF                           PolicyType = 0xb0002002
	PolicyLeastUsedDegradationDPF                PolicyType = 0xb0002003
	PolicyPriorityLeastUsedDPF                   PolicyType = 0xb0002004
	PolicyPriorityLeastUsedDegradationDPF        PolicyType = 0xb0002005
)

// policyField names one 32-bit value of a policy, in wire order.
type policyField uint8

const (
	pfWeight policyField = iota
	pfPriority
	pfLoad
	pfLoadDegradation
	pfLoadDPF
	pfWeightDPF
	pfDistance
)

type policyInfo struct {
	name   string
	fields []policyField
}

// policies gives each known policy its short name and the values that
// follow the type, in wire order (RFC 5356; rsplib rserpoolmessage.h for
// the extended codes).
var policyTable = map[PolicyType]policyInfo{
	PolicyRoundRobin:                             {"RR", nil},
	PolicyWeightedRoundRobin:                     {"WRR", []policyField{pfWeight}},
	PolicyRandom:                                 {"RAND", nil},
	PolicyWeightedRandom:                         {"WRAND", []policyField{pfWeight}},
	PolicyPriority:                               {"PRIO", []policyField{pfPriority}},
	PolicyLeastUsed:                              {"LU", []policyField{pfLoad}},
	PolicyLeastUsedDegradation:                   {"LUD", []policyField{pfLoad, pfLoadDegradation}},
	PolicyPriorityLeastUsed:                      {"PLU", []policyField{pfLoad, pfLoadDegradation}},
	PolicyRandomizedLeastUsed:                    {"RLU", []policyField{pfLoad}},
	PolicyRandomizedPriorityLeastUsed:            {"RPLU", []policyField{pfLoad, pfLoadDegradation}},
	PolicyRandomizedLeastUsedDegradation:         {"RLUD", []policyField{pfLoad, pfLoadDegradation}},
	PolicyPriorityLeastUsedDegradation:           {"PLUD", []policyField{pfLoad, pfLoadDegradation}},
	PolicyRandomizedPriorityLeastUsedDegradation: {"RPLUD", []policyField{pfLoad, pfLoadDegradation}},
	PolicyWeightedRandomDPF:                      {"WRAND-DPF", []policyField{pfWeight, pfWeightDPF, pfDistance}},
	PolicyLeastUsedDPF:                           {"LU-DPF", []policyField{pfLoad, pfLoadDPF, pfDistance}},
	PolicyLeastUsedDegradationDPF:                {"LUD-DPF", []policyField{pfLoad, pfLoadDegradation, pfLoadDPF, pfDistance}},
	PolicyPriorityLeastUsedDPF:                   {"PLU-DPF", []policyField{pfLoad, pfLoadDegradation, pfLoadDPF, pfDistance}},
	PolicyPriorityLeastUsedDegradationDPF:        {"PLUD-DPF", []policyField{pfLoad, pfLoadDegradation, pfLoadDPF, pfDistance}},
}

// Layouts of the known policies, indexed for a lookup without hashing on
// the decoding path.
var (
	policyBasic [6]policyInfo // 0x00000000-0x00000005
	policyLU    [5]policyInfo // 0x40000000-0x40000004
	policyB1    [5]policyInfo // 0xb0001000-0xb0001004
	policyB2    [6]policyInfo // 0xb0002000-0xb0002005
)

func init() {
	for t, pi := range policyTable {
		switch lo := int(t & 0xfff); t &^ 0xfff {
		case 0:
			policyBasic[lo] = pi
		case 0x40000000:
			policyLU[lo] = pi
		case 0xb0001000:
			policyB1[lo] = pi
		case 0xb0002000:
			policyB2[lo] = pi
		}
	}
}

// policies returns the layout of t; ok is false for unknown types.
func policies(t PolicyType) (pi policyInfo, ok bool) {
	var tab []policyInfo
	switch t &^ 0xfff {
	case 0:
		tab = policyBasic[:]
	case 0x40000000:
		tab = policyLU[:]
	case 0xb0001000:
		tab = policyB1[:]
	case 0xb0002000:
		tab = policyB2[:]
	default:
		return pi, false
	}
	lo := int(t & 0xfff)
	if lo >= len(tab) || tab[lo].name == "" {
		return pi, false
	}
	return tab[lo], true
}

// Known reports whether the layout of t's values is known to this package.
func (t PolicyType) Known() bool { _, ok := policies(t); return ok }

// String returns the policy's short name ("WRR", "LU-DPF") or its code.
func (t PolicyType) String() string {
	if pi, ok := policies(t); ok {
		return pi.name
	}
	return fmt.Sprintf("Policy(%#08x)", uint32(t))
}

// PolicyTypes lists every policy type whose values this package decodes.
func PolicyTypes() []PolicyType {
	return []PolicyType{
		PolicyRoundRobin, PolicyWeightedRoundRobin, PolicyRandom, PolicyWeightedRandom, PolicyPriority,
		PolicyLeastUsed, PolicyLeastUsedDegradation, PolicyPriorityLeastUsed, PolicyRandomizedLeastUsed,
		PolicyRandomizedPriorityLeastUsed, PolicyRandomizedLeastUsedDegradation,
		PolicyPriorityLeastUsedDegradation, PolicyRandomizedPriorityLeastUsedDegradation,
		PolicyWeightedRandomDPF, PolicyLeastUsedDPF, PolicyLeastUsedDegradationDPF,
		PolicyPriorityLeastUsedDPF, PolicyPriorityLeastUsedDegradationDPF,
	}
}

// Policy is a Pool Member Selection Policy parameter. Only the values the
// policy type defines are on the wire (e.g. Weight for WRR, Load and
// LoadDegradation for LUD); the others are ignored when encoding.
//
// Load, LoadDegradation, LoadDPF and WeightDPF are fractions scaled to the
// full uint32 range (0xffffffff = 100%), as rsplib and Wireshark read them.
type Policy struct {
	Type            PolicyType
	Weight          uint32
	Priority        uint32
	Load            uint32
	LoadDegradation uint32
	LoadDPF         uint32
	WeightDPF       uint32
	Distance        uint32
	// Opaque, when non-nil, holds the value bytes after the type verbatim
	// and the named fields are ignored. The decoder sets it for unknown
	// policy types and for known types whose value length is not the
	// expected one, so such policies re-encode byte for byte.
	Opaque []byte
}

func (p *Policy) field(f policyField) *uint32 {
	switch f {
	case pfWeight:
		return &p.Weight
	case pfPriority:
		return &p.Priority
	case pfLoad:
		return &p.Load
	case pfLoadDegradation:
		return &p.LoadDegradation
	case pfLoadDPF:
		return &p.LoadDPF
	case pfWeightDPF:
		return &p.WeightDPF
	}
	return &p.Distance
}

var policyFieldNames = [...]string{"weight", "priority", "load", "loaddeg", "loaddpf", "weightdpf", "distance"}

// Values returns the named values the policy carries on the wire, in wire
// order, e.g. [["weight", 3]]; nil for opaque or value-less policies.
func (p *Policy) Values() (names []string, values []uint32) {
	pi, ok := policies(p.Type)
	if !ok || p.Opaque != nil {
		return nil, nil
	}
	for _, f := range pi.fields {
		names = append(names, policyFieldNames[f])
		values = append(values, *p.field(f))
	}
	return names, values
}
