// Package policy defines the RSerPool pool policies of RFC 5356 and the
// rsplib extensions: their wire type numbers, the policy values a pool
// element registers with (Settings), the per-element selection state the
// handlespace keeps (Entry) and, for every policy, an Algorithm that orders
// or weighs entries for handle resolution and derives data-plane weights.
//
// Adding a policy takes one file that declares an Algorithm value and one
// line in the builtin list in registry.go. Handlespaces may also be given
// extra algorithms at construction, so experiments need no edit here.
//
// Semantics follow rsplib (the reference implementation) where RFC 5356 is
// silent: ties are broken by a per-pool sequence number (the element that
// was selected longest ago, or registered earliest, wins), the randomized
// policies draw without replacement in ascending identifier order, and a
// re-registration that changes policy values resets the degradation
// counter. One deliberate difference: rsplib applies a policy's per-
// selection update twice (once explicitly and once when relinking the
// element); we apply it once. For Weighted Round Robin that keeps the same
// proportions (rounds are simply twice as long); for Least Used with
// Degradation the degradation grows by one load-degradation step per
// selection instead of two.
package policy

import "fmt"

// Type is a pool policy type number as carried in the RFC 5354 Pool Member
// Selection Policy parameter.
type Type uint32

// Policy type numbers of RFC 5356 (0x1-0x5, 0x40000001-0x40000004) and of
// rsplib's extensions (0xb0001xxx, 0xb0002xxx for the distance-aware "DPF"
// family used by geographically dispersed pools).
const (
	TypeRoundRobin                             Type = 0x00000001
	TypeWeightedRoundRobin                     Type = 0x00000002
	TypeRandom                                 Type = 0x00000003
	TypeWeightedRandom                         Type = 0x00000004
	TypePriority                               Type = 0x00000005
	TypeLeastUsed                              Type = 0x40000001
	TypeLeastUsedDegradation                   Type = 0x40000002
	TypePriorityLeastUsed                      Type = 0x40000003
	TypeRandomizedLeastUsed                    Type = 0x40000004
	TypeRandomizedPriorityLeastUsed            Type = 0xb0001001
	TypeRandomizedLeastUsedDegradation         Type = 0xb0001002
	TypePriorityLeastUsedDegradation           Type = 0xb0001003
	TypeRandomizedPriorityLeastUsedDegradation Type = 0xb0001004
	TypeWeightedRandomDPF                      Type = 0xb0002001
	TypeLeastUsedDPF                           Type = 0xb0002002
	TypeLeastUsedDegradationDPF                Type = 0xb0002003
	TypePriorityLeastUsedDPF                   Type = 0xb0002004
	TypePriorityLeastUsedDegradationDPF        Type = 0xb0002005
)

// MaxLoad is the load value that means 100 % (RFC 5356 scales loads,
// load degradations and DPF factors to the full 32-bit range).
const MaxLoad = 0xffffffff

// String returns the rsplib name of the policy, or the number in hex.
func (t Type) String() string {
	if a := Lookup(t); a != nil {
		return a.Name
	}
	return fmt.Sprintf("policy(0x%08x)", uint32(t))
}

// Settings is the policy a pool element registers with: the type and every
// policy value any policy uses. Values a policy does not use are ignored by
// it. Distance is not sent by the PE: the registrar measures it (rsplib uses
// the rounded round-trip time in milliseconds) and fills it in.
type Settings struct {
	Type Type
	// Weight is the WRR/WRAND weight, or the priority for Priority (larger
	// value = preferred, as rsplib).
	Weight uint32
	// Load is the current load, MaxLoad meaning 100 %.
	Load uint32
	// LoadDegradation is the load increase one new user causes.
	LoadDegradation uint32
	// LoadDPF and WeightDPF are the distance penalty factors per distance
	// unit, scaled so that MaxLoad means 1.0.
	LoadDPF   uint32
	WeightDPF uint32
	// Distance is the registrar-measured distance to the PE.
	Distance uint32
}

// RoundRobin returns Round Robin settings (0x1).
func RoundRobin() Settings { return Settings{Type: TypeRoundRobin} }

// WeightedRoundRobin returns Weighted Round Robin settings (0x2).
func WeightedRoundRobin(weight uint32) Settings {
	return Settings{Type: TypeWeightedRoundRobin, Weight: weight}
}

// Random returns Random settings (0x3).
func Random() Settings { return Settings{Type: TypeRandom} }

// WeightedRandom returns Weighted Random settings (0x4).
func WeightedRandom(weight uint32) Settings {
	return Settings{Type: TypeWeightedRandom, Weight: weight}
}

// Priority returns Priority settings (0x5); the highest value wins.
func Priority(priority uint32) Settings {
	return Settings{Type: TypePriority, Weight: priority}
}

// LeastUsed returns Least Used settings (0x40000001).
func LeastUsed(load uint32) Settings { return Settings{Type: TypeLeastUsed, Load: load} }

// LeastUsedDegradation returns Least Used with Degradation settings
// (0x40000002).
func LeastUsedDegradation(load, degradation uint32) Settings {
	return Settings{Type: TypeLeastUsedDegradation, Load: load, LoadDegradation: degradation}
}

// PriorityLeastUsed returns Priority Least Used settings (0x40000003).
func PriorityLeastUsed(load, degradation uint32) Settings {
	return Settings{Type: TypePriorityLeastUsed, Load: load, LoadDegradation: degradation}
}

// RandomizedLeastUsed returns Randomized Least Used settings (0x40000004).
func RandomizedLeastUsed(load uint32) Settings {
	return Settings{Type: TypeRandomizedLeastUsed, Load: load}
}

// WeightedRandomDPF returns Weighted Random with Distance Penalty Factor
// settings (0xb0002001).
func WeightedRandomDPF(weight, weightDPF uint32) Settings {
	return Settings{Type: TypeWeightedRandomDPF, Weight: weight, WeightDPF: weightDPF}
}

// LeastUsedDPF returns Least Used with Distance Penalty Factor settings
// (0xb0002002).
func LeastUsedDPF(load, loadDPF uint32) Settings {
	return Settings{Type: TypeLeastUsedDPF, Load: load, LoadDPF: loadDPF}
}

// LeastUsedDegradationDPF returns Least Used with Degradation and Distance
// Penalty Factor settings (0xb0002003).
func LeastUsedDegradationDPF(load, degradation, loadDPF uint32) Settings {
	return Settings{Type: TypeLeastUsedDegradationDPF, Load: load, LoadDegradation: degradation, LoadDPF: loadDPF}
}

// PriorityLeastUsedDPF returns Priority Least Used with Distance Penalty
// Factor settings (0xb0002004).
func PriorityLeastUsedDPF(load, degradation, loadDPF uint32) Settings {
	return Settings{Type: TypePriorityLeastUsedDPF, Load: load, LoadDegradation: degradation, LoadDPF: loadDPF}
}

// PriorityLeastUsedDegradationDPF returns Priority Least Used with
// Degradation and Distance Penalty Factor settings (0xb0002005).
func PriorityLeastUsedDegradationDPF(load, degradation, loadDPF uint32) Settings {
	return Settings{Type: TypePriorityLeastUsedDegradationDPF, Load: load, LoadDegradation: degradation, LoadDPF: loadDPF}
}

// Kind says how an algorithm selects.
type Kind uint8

const (
	// Ordered algorithms keep the pool sorted by Less and return its head.
	Ordered Kind = iota + 1
	// Weighted algorithms draw without replacement, with probability
	// proportional to Value.
	Weighted
)

// Entry is the selection state of one pool element. The handlespace owns
// it; algorithms read and update it under the pool's lock.
type Entry struct {
	ID       uint32
	Settings Settings
	// Seq orders equal entries: it is taken from the pool's counter when the
	// entry is added and every time it is selected (and advanced).
	Seq uint64
	// Round and Virtual are the Weighted Round Robin counters.
	Round   uint64
	Virtual uint64
	// Degradation is the load added by selections since the last
	// re-registration (the "degradation" policies).
	Degradation uint32
	// FlowDegradation is the load added by new flows the data plane
	// steered to the element since its last re-registration, for the
	// degradation policies: the steering set's counterpart of Degradation,
	// which handle resolutions grow.
	FlowDegradation uint32
	// Value caches Algorithm.Value for Weighted algorithms.
	Value uint64
	// Selected counts how often the entry was returned.
	Selected uint64
}

// Algorithm implements one policy. Only Type, Name, Kind and Steer are
// required, plus Less for Ordered and Value for Weighted algorithms.
type Algorithm struct {
	Type Type
	Name string
	Kind Kind
	// DefaultMaxIncrement applies when the registrar's max increment is 0:
	// how many of the selected entries advance their state. rsplib uses 1
	// for ordered and 0 for weighted policies.
	DefaultMaxIncrement int
	// Less orders entries, most preferred first (Ordered).
	Less func(a, b *Entry) bool
	// Value is an entry's draw weight (Weighted); 0 means never drawn.
	Value func(e *Entry) uint64
	// Init prepares a new entry; head is the pool's current first entry in
	// selection order, or nil.
	Init func(e, head *Entry)
	// Update advances an entry's state after it was selected.
	Update func(e *Entry)
	// FlowsDegrade: new flows the data plane steers to an entry add the
	// entry's load degradation to its FlowDegradation, which Steer reads.
	FlowsDegrade bool
	// Steer writes the data-plane weight of each entry into w (len(w) ==
	// len(es)): the share of new flows each may receive. 0 means no new
	// flows.
	Steer func(es []*Entry, w []uint32)
}

// byID is the order of the Weighted algorithms (rsplib stores them by
// identifier).
func byID(a, b *Entry) bool { return a.ID < b.ID }

// bySeq breaks ties: the entry selected least recently comes first.
func bySeq(a, b *Entry) bool { return a.Seq < b.Seq }

// sum3 adds three load values, saturating at MaxLoad.
func sum3(a, b, c uint32) uint64 {
	v := uint64(a) + uint64(b) + uint64(c)
	if v > MaxLoad {
		return MaxLoad
	}
	return v
}

// freeShare turns an effective load into a draw weight: the remaining
// capacity, at least 1 so a fully loaded element is still reachable (as
// rsplib does for Randomized Least Used).
func freeShare(load uint64) uint64 {
	if load >= MaxLoad {
		return 1
	}
	return MaxLoad - load
}

// steerFree derives 16-bit data-plane weights from effective loads: flows
// are shared in proportion to free capacity.
func steerFree(load func(e *Entry) uint64) func(es []*Entry, w []uint32) {
	return func(es []*Entry, w []uint32) {
		for i, e := range es {
			w[i] = uint32(freeShare(load(e)) >> 16)
			if w[i] == 0 {
				w[i] = 1
			}
		}
	}
}

// steerEqual gives every entry weight 1.
func steerEqual(es []*Entry, w []uint32) {
	for i := range es {
		w[i] = 1
	}
}

// steerWeight uses the registered weight.
func steerWeight(es []*Entry, w []uint32) {
	for i, e := range es {
		w[i] = e.Settings.Weight
	}
}
