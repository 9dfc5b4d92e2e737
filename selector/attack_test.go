package selector

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/rspxdp/rspxdp/selector/policy"
)

// Small faults found under attack (issue 19 item 8).
func TestWeightExtremes(t *testing.T) {
	t.Run("two WRR weights of 2^32-1 share the selections", func(t *testing.T) {
		h := newHS(t, Config{})
		for id := uint32(1); id <= 2; id++ {
			mustRegister(t, h, "wrr", mkPE(id, policy.WeightedRoundRobin(1<<32-1)), t0)
		}
		c := countSelections(t, h, "wrr", 1000, 1)
		if c[1] < 400 || c[2] < 400 {
			t.Fatalf("selections %v, want both about 500", c)
		}
	})
	t.Run("WRAND with every weight 0 still answers", func(t *testing.T) {
		h := newHS(t, Config{})
		for id := uint32(1); id <= 3; id++ {
			mustRegister(t, h, "wrand", mkPE(id, policy.WeightedRandom(0)), t0)
		}
		c := countSelections(t, h, "wrand", 300, 2)
		for id := uint32(1); id <= 3; id++ {
			if c[id] < 100 {
				t.Fatalf("selections %v, want each PE about 200", c)
			}
		}
		all, err := h.Resolve("wrand", All, nil)
		if err != nil || len(all) != 3 {
			t.Fatalf("resolve all: %d PEs, %v", len(all), err)
		}
	})
}

// Creating a pool costs the same with 20,000 pools as with none: the pool
// map was copied on every creation (554 registrations/s at 60,000 pools).
func TestPoolCreationDoesNotCopyThePools(t *testing.T) {
	h := newHS(t, Config{})
	for i := range 20000 {
		mustRegister(t, h, fmt.Sprintf("p%d", i), mkPE(1, policy.RoundRobin()), t0)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range 100 {
		mustRegister(t, h, fmt.Sprintf("q%d", i), mkPE(1, policy.RoundRobin()), t0)
	}
	runtime.ReadMemStats(&after)
	per := (after.TotalAlloc - before.TotalAlloc) / 100
	t.Logf("%d bytes allocated per pool created at 20,000 pools", per)
	if per > 64<<10 {
		t.Fatalf("%d bytes allocated per pool created at 20,000 pools: the pools are copied", per)
	}
}

func BenchmarkCreatePoolAt60000(b *testing.B) {
	h := newHS(b, Config{})
	for i := range 60000 {
		mustRegister(b, h, fmt.Sprintf("p%d", i), mkPE(1, policy.RoundRobin()), t0)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		mustRegister(b, h, fmt.Sprintf("q%d", i), mkPE(1, policy.RoundRobin()), t0)
	}
}
