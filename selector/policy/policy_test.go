package policy

import (
	"testing"
)

func TestRegistry(t *testing.T) {
	seen := map[Type]bool{}
	for _, a := range All() {
		if err := a.Validate(); err != nil {
			t.Errorf("%s: %v", a.Name, err)
		}
		if seen[a.Type] {
			t.Errorf("duplicate type %#x", uint32(a.Type))
		}
		seen[a.Type] = true
		if a.Type.String() != a.Name {
			t.Errorf("String() = %q, want %q", a.Type.String(), a.Name)
		}
	}
	// Every type number of RFC 5356 and rsplib is implemented.
	for _, typ := range []Type{0x1, 0x2, 0x3, 0x4, 0x5, 0x40000001, 0x40000002, 0x40000003, 0x40000004,
		0xb0001001, 0xb0001002, 0xb0001003, 0xb0001004, 0xb0002001, 0xb0002002, 0xb0002003, 0xb0002004, 0xb0002005} {
		if Lookup(typ) == nil {
			t.Errorf("type %#x missing", uint32(typ))
		}
	}
	if Lookup(0x42) != nil || Type(0x42).String() != "policy(0x00000042)" {
		t.Error("unknown type resolved")
	}
}

func TestConstructors(t *testing.T) {
	tests := []struct {
		got  Settings
		want Settings
	}{
		{WeightedRoundRobin(3), Settings{Type: TypeWeightedRoundRobin, Weight: 3}},
		{Priority(9), Settings{Type: TypePriority, Weight: 9}},
		{LeastUsedDegradation(1, 2), Settings{Type: TypeLeastUsedDegradation, Load: 1, LoadDegradation: 2}},
		{WeightedRandomDPF(10, 20), Settings{Type: TypeWeightedRandomDPF, Weight: 10, WeightDPF: 20}},
		{PriorityLeastUsedDegradationDPF(1, 2, 3), Settings{Type: TypePriorityLeastUsedDegradationDPF, Load: 1, LoadDegradation: 2, LoadDPF: 3}},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %+v, want %+v", tc.got, tc.want)
		}
	}
}

func TestValues(t *testing.T) {
	tests := []struct {
		name string
		alg  *Algorithm
		e    Entry
		want uint64
	}{
		// rsplib: Weight - round(Weight x Distance x WeightDPF/MaxLoad).
		{"wrand-dpf no distance", &weightedRandomDPF, Entry{Settings: Settings{Weight: 1000, WeightDPF: MaxLoad / 100}}, 1000},
		{"wrand-dpf 25 units of 1%", &weightedRandomDPF, Entry{Settings: Settings{Weight: 1000, WeightDPF: MaxLoad / 100, Distance: 25}}, 750},
		{"wrand-dpf penalty above weight", &weightedRandomDPF, Entry{Settings: Settings{Weight: 1000, WeightDPF: MaxLoad / 100, Distance: 500}}, 1},
		{"rlu free capacity", &randomizedLeastUsed, Entry{Settings: Settings{Load: MaxLoad - 10}}, 10},
		{"rlu full still reachable", &randomizedLeastUsed, Entry{Settings: Settings{Load: MaxLoad}}, 1},
		{"rplu saturates", &randomizedPriorityLeastUsed, Entry{Settings: Settings{Load: MaxLoad, LoadDegradation: MaxLoad}}, 1},
	}
	for _, tc := range tests {
		if got := tc.alg.Value(&tc.e); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestDegradationSaturates(t *testing.T) {
	e := Entry{Settings: Settings{LoadDegradation: MaxLoad / 2}}
	for range 5 {
		leastUsedDegradation.Update(&e)
	}
	if e.Degradation != MaxLoad {
		t.Fatalf("degradation %#x, want saturated", e.Degradation)
	}
}

func TestWeightedRoundRobinCounters(t *testing.T) {
	head := Entry{Round: 7}
	e := Entry{Settings: Settings{Weight: 2}}
	weightedRoundRobin.Init(&e, &head)
	if e.Round != 7 || e.Virtual != 2 {
		t.Fatalf("init: round %d virtual %d", e.Round, e.Virtual)
	}
	weightedRoundRobin.Update(&e)
	weightedRoundRobin.Update(&e)
	if e.Round != 8 || e.Virtual != 2 {
		t.Fatalf("after two selections: round %d virtual %d", e.Round, e.Virtual)
	}
}

func TestPrioritySteer(t *testing.T) {
	es := []*Entry{{Settings: Settings{Weight: 3}}, {Settings: Settings{Weight: 5}}, {Settings: Settings{Weight: 5}}}
	w := make([]uint32, 3)
	priority.Steer(es, w)
	if w[0] != 0 || w[1] != 1 || w[2] != 1 {
		t.Fatalf("weights %v", w)
	}
}
