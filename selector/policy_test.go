package selector

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/rspxdp/rspxdp/selector/policy"
)

func TestRoundRobinSlidingWindow(t *testing.T) {
	tests := []struct {
		name   string
		maxInc int
		want   [][]uint32
	}{
		// rsplib default: only the first returned element advances.
		{"maxinc default", 0, [][]uint32{{1, 2, 3}, {2, 3, 4}, {3, 4, 1}, {4, 1, 2}}},
		{"maxinc 3", 3, [][]uint32{{1, 2, 3}, {4, 1, 2}, {3, 4, 1}, {2, 3, 4}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHS(t, Config{MaxIncrement: tc.maxInc})
			for id := uint32(1); id <= 4; id++ {
				mustRegister(t, h, "rr", mkPE(id, policy.RoundRobin()), t0)
			}
			for i, want := range tc.want {
				if got := resolveIDs(t, h, "rr", 3); !slices.Equal(got, want) {
					t.Fatalf("resolution %d = %v, want %v", i, got, want)
				}
			}
		})
	}
}

func TestRoundRobinNewElementJoinsTail(t *testing.T) {
	h := newHS(t, Config{})
	mustRegister(t, h, "rr", mkPE(1, policy.RoundRobin()), t0)
	mustRegister(t, h, "rr", mkPE(2, policy.RoundRobin()), t0)
	resolveIDs(t, h, "rr", 1) // 1 moves behind 2
	mustRegister(t, h, "rr", mkPE(3, policy.RoundRobin()), t0)
	var got []uint32
	for range 6 {
		got = append(got, resolveIDs(t, h, "rr", 1)...)
	}
	if want := []uint32{2, 1, 3, 2, 1, 3}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// A re-registration with unchanged values keeps the element's place.
	mustRegister(t, h, "rr", mkPE(2, policy.RoundRobin()), t0)
	if got := resolveIDs(t, h, "rr", 1); got[0] != 2 {
		t.Fatalf("after refresh got %v, want 2 first", got)
	}
}

func countSelections(t *testing.T, h *Handlespace, handle string, rounds, n int) map[uint32]int {
	t.Helper()
	c := map[uint32]int{}
	var buf []PoolElement
	for range rounds {
		var err error
		buf, err = h.Resolve(handle, n, buf[:0])
		if err != nil {
			t.Fatal(err)
		}
		seen := map[uint32]bool{}
		for _, e := range buf {
			if seen[e.ID] {
				t.Fatalf("element %d returned twice in one resolution", e.ID)
			}
			seen[e.ID] = true
			c[e.ID]++
		}
	}
	return c
}

func TestWeightedRoundRobinExactShares(t *testing.T) {
	h := newHS(t, Config{})
	for id, w := range map[uint32]uint32{1: 1, 2: 2, 3: 3} {
		mustRegister(t, h, "wrr", mkPE(id, policy.WeightedRoundRobin(w)), t0)
	}
	c := countSelections(t, h, "wrr", 600, 1)
	if c[1] != 100 || c[2] != 200 || c[3] != 300 {
		t.Fatalf("counts %v, want 100/200/300", c)
	}
	// Within one round of 6 selections every element appears weight times.
	var round []uint32
	for range 6 {
		round = append(round, resolveIDs(t, h, "wrr", 1)...)
	}
	got := map[uint32]int{}
	for _, id := range round {
		got[id]++
	}
	if got[1] != 1 || got[2] != 2 || got[3] != 3 {
		t.Fatalf("round %v not weighted 1:2:3", round)
	}
}

func TestPriority(t *testing.T) {
	h := newHS(t, Config{})
	mustRegister(t, h, "p", mkPE(1, policy.Priority(5)), t0)
	mustRegister(t, h, "p", mkPE(2, policy.Priority(9)), t0)
	mustRegister(t, h, "p", mkPE(3, policy.Priority(9)), t0)
	mustRegister(t, h, "p", mkPE(4, policy.Priority(1)), t0)
	var firsts []uint32
	for range 4 {
		firsts = append(firsts, resolveIDs(t, h, "p", 1)...)
	}
	if want := []uint32{2, 3, 2, 3}; !slices.Equal(firsts, want) {
		t.Fatalf("got %v, want %v (highest class, round robin among ties)", firsts, want)
	}
	if got := resolveIDs(t, h, "p", All); !slices.Equal(got, []uint32{2, 3, 1, 4}) && !slices.Equal(got, []uint32{3, 2, 1, 4}) {
		t.Fatalf("all = %v, want priority order", got)
	}
}

func TestLeastUsed(t *testing.T) {
	h := newHS(t, Config{})
	mustRegister(t, h, "lu", mkPE(1, policy.LeastUsed(300)), t0)
	mustRegister(t, h, "lu", mkPE(2, policy.LeastUsed(100)), t0)
	mustRegister(t, h, "lu", mkPE(3, policy.LeastUsed(100)), t0)
	mustRegister(t, h, "lu", mkPE(4, policy.LeastUsed(200)), t0)
	if got := resolveIDs(t, h, "lu", 3); !slices.Equal(got, []uint32{2, 3, 4}) {
		t.Fatalf("got %v", got)
	}
	// Tie between 2 and 3: 2 was just advanced, so 3 leads now.
	if got := resolveIDs(t, h, "lu", 1); got[0] != 3 {
		t.Fatalf("tie not round robin: %v", got)
	}
	// A new load via re-registration re-sorts at once.
	mustRegister(t, h, "lu", mkPE(1, policy.LeastUsed(0)), t0)
	if got := resolveIDs(t, h, "lu", 1); got[0] != 1 {
		t.Fatalf("after load update got %v", got)
	}
}

func TestLeastUsedDegradation(t *testing.T) {
	h := newHS(t, Config{})
	// Element 1 starts lighter but degrades by 100 per selection.
	mustRegister(t, h, "lud", mkPE(1, policy.LeastUsedDegradation(1000, 100)), t0)
	mustRegister(t, h, "lud", mkPE(2, policy.LeastUsedDegradation(1250, 100)), t0)
	var got []uint32
	for range 6 {
		got = append(got, resolveIDs(t, h, "lud", 1)...)
	}
	// 1:1000,1100,1200 then 1300>1250 -> 2 (1250->1350) -> 1 (1300) ...
	if want := []uint32{1, 1, 1, 2, 1, 2}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// Re-registration resets the degradation even with unchanged values.
	mustRegister(t, h, "lud", mkPE(1, policy.LeastUsedDegradation(1000, 100)), t0)
	if got := resolveIDs(t, h, "lud", 1); got[0] != 1 {
		t.Fatalf("degradation not reset: %v", got)
	}
}

func TestPriorityLeastUsed(t *testing.T) {
	h := newHS(t, Config{})
	mustRegister(t, h, "plu", mkPE(1, policy.PriorityLeastUsed(100, 500)), t0)
	mustRegister(t, h, "plu", mkPE(2, policy.PriorityLeastUsed(400, 100)), t0)
	if got := resolveIDs(t, h, "plu", 2); !slices.Equal(got, []uint32{2, 1}) {
		t.Fatalf("got %v, want load+degradation order [2 1]", got)
	}
}

func TestLeastUsedDPF(t *testing.T) {
	h := newHS(t, Config{})
	near := mkPE(1, policy.LeastUsedDPF(policy.MaxLoad/2, policy.MaxLoad/100))
	near.Policy.Distance = 5 // +5 %
	far := mkPE(2, policy.LeastUsedDPF(policy.MaxLoad/4, policy.MaxLoad/100))
	far.Policy.Distance = 30 // +30 %: 55 % vs 55 %... make it 40
	far.Policy.Distance = 40
	mustRegister(t, h, "dpf", near, t0)
	mustRegister(t, h, "dpf", far, t0)
	if got := resolveIDs(t, h, "dpf", 1); got[0] != 1 {
		t.Fatalf("far element (25%%+40%%) beat near one (50%%+5%%): %v", got)
	}
}

// TestRandomizedShares checks every randomized policy draws in proportion
// to its value, without duplicates.
func TestRandomizedShares(t *testing.T) {
	third := uint32(policy.MaxLoad / 3)
	tests := []struct {
		name  string
		set   []policy.Settings
		share []float64
	}{
		{"random", []policy.Settings{policy.Random(), policy.Random(), policy.Random(), policy.Random()}, []float64{.25, .25, .25, .25}},
		{"weighted random", []policy.Settings{policy.WeightedRandom(1), policy.WeightedRandom(2), policy.WeightedRandom(3), policy.WeightedRandom(0)}, []float64{1. / 6, 2. / 6, 3. / 6, 0}},
		{"randomized least used", []policy.Settings{policy.RandomizedLeastUsed(0), policy.RandomizedLeastUsed(third), policy.RandomizedLeastUsed(2 * third)}, []float64{.5, 1. / 3, 1. / 6}},
		{"weighted random dpf", []policy.Settings{policy.WeightedRandomDPF(100, 0), policy.WeightedRandomDPF(100, policy.MaxLoad/100)}, []float64{100. / 150, 50. / 150}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHS(t, Config{Seed: 42})
			for i, s := range tc.set {
				el := mkPE(uint32(i+1), s)
				if s.Type == policy.TypeWeightedRandomDPF && i == 1 {
					el.Policy.Distance = 50 // halves the weight
				}
				mustRegister(t, h, "r", el, t0)
			}
			const rounds = 200_000
			c := countSelections(t, h, "r", rounds, 1)
			for i, want := range tc.share {
				got := float64(c[uint32(i+1)]) / rounds
				if math.Abs(got-want) > 0.01 {
					t.Errorf("element %d share %.4f, want %.4f", i+1, got, want)
				}
			}
			// Draws of 3 never repeat an element (checked in countSelections).
			countSelections(t, h, "r", 1000, 3)
		})
	}
}

func TestEveryPolicyResolves(t *testing.T) {
	for _, a := range policy.All() {
		t.Run(a.Name, func(t *testing.T) {
			if err := a.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := policy.Lookup(a.Type); got != a {
				t.Fatalf("lookup %s", a.Type)
			}
			h := newHS(t, Config{Seed: 1})
			for id := uint32(1); id <= 10; id++ {
				s := policy.Settings{Type: a.Type, Weight: id, Load: id * 1000, LoadDegradation: 10, LoadDPF: 1, WeightDPF: 1, Distance: id}
				mustRegister(t, h, "x", mkPE(id, s), t0)
			}
			c := countSelections(t, h, "x", 100, 3)
			total := 0
			for _, n := range c {
				total += n
			}
			if total != 300 {
				t.Fatalf("%d selections, want 300", total)
			}
			ss, ok := h.SteeringSet("x")
			if !ok || len(ss.Members) != 10 || ss.Policy != a.Type {
				t.Fatalf("steering set %+v", ss)
			}
			sum := uint64(0)
			for _, m := range ss.Members {
				sum += uint64(m.Weight)
			}
			if sum == 0 {
				t.Fatal("all steering weights 0")
			}
		})
	}
	if len(policy.All()) != 18 {
		t.Fatalf("%d policies registered, want 18", len(policy.All()))
	}
}

func TestCustomPolicy(t *testing.T) {
	// A policy added through Config: always the highest identifier.
	highest := &policy.Algorithm{
		Type: 0xfeed0001, Name: "Highest", Kind: policy.Ordered,
		DefaultMaxIncrement: 1,
		Less:                func(a, b *policy.Entry) bool { return a.ID > b.ID },
		Steer: func(es []*policy.Entry, w []uint32) {
			for i := range es {
				w[i] = 1
			}
		},
	}
	h := newHS(t, Config{Policies: []*policy.Algorithm{highest}})
	for id := uint32(1); id <= 3; id++ {
		mustRegister(t, h, "c", mkPE(id, policy.Settings{Type: 0xfeed0001}), t0)
	}
	for range 3 {
		if got := resolveIDs(t, h, "c", 1); got[0] != 3 {
			t.Fatalf("got %v", got)
		}
	}
	if _, err := New(Config{Policies: []*policy.Algorithm{{Name: "broken", Type: 9}}}); err == nil {
		t.Fatal("invalid algorithm accepted")
	}
}

func ExampleHandlespace_Resolve() {
	h, _ := New(Config{})
	for id := uint32(1); id <= 3; id++ {
		_, _ = h.Register("EchoPool", mkPE(id, policy.WeightedRoundRobin(id)), t0)
	}
	for range 3 {
		got, _ := h.Resolve("EchoPool", 1, nil)
		fmt.Print(got[0].ID, " ")
	}
	// Weighted Round Robin orders by round, then by the remaining virtual
	// count: element 2 (weight 2) is returned twice in a row.
	// Output: 1 2 2
}
