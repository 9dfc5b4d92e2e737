package selector

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestExpiryHeap checks the indexed heap against a sorted reference under
// random pushes, removals and deadline updates.
func TestExpiryHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	var h expiryHeap
	live := map[*pe]bool{}
	for step := range 20000 {
		switch op := rng.IntN(4); {
		case op == 0 || len(live) == 0:
			e := &pe{heapIdx: -1, deadline: rng.Int64N(1000)}
			h.push(e)
			live[e] = true
		case op == 1:
			for e := range live {
				h.remove(e)
				delete(live, e)
				break
			}
		case op == 2:
			for e := range live {
				e.deadline = rng.Int64N(1000)
				h.update(e)
				break
			}
		default:
			if len(h) > 0 {
				e := h[0].e
				for o := range live {
					if o.deadline < e.deadline {
						t.Fatalf("step %d: head %d but %d is live", step, e.deadline, o.deadline)
					}
				}
				h.remove(e)
				delete(live, e)
			}
		}
		if len(h) != len(live) {
			t.Fatalf("step %d: heap %d, live %d", step, len(h), len(live))
		}
		for i, it := range h {
			if it.e.heapIdx != i || it.deadline != it.e.deadline {
				t.Fatalf("step %d: index or deadline out of sync at %d", step, i)
			}
			if i > 0 && h[(i-1)/arity].deadline > it.deadline {
				t.Fatalf("step %d: heap order broken at %d", step, i)
			}
		}
	}
	var got []int64
	for len(h) > 0 {
		got = append(got, h[0].deadline)
		h.remove(h[0].e)
	}
	if !slices.IsSorted(got) {
		t.Fatal("drain not sorted")
	}
}
