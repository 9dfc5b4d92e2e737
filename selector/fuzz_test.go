package selector

import (
	"fmt"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/selector/policy"
)

// FuzzOperations drives a handlespace with an arbitrary sequence of
// registrations (any policy), replications, deregistrations, removals,
// reports, resolutions, takeovers and sweeps, and checks after every step
// the invariants the registrar and the data plane rely on.
func FuzzOperations(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte{0, 0, 0, 16, 1, 1, 32, 2, 2, 48, 3, 3, 64, 4, 5, 80, 5, 6, 96, 7, 8, 112, 9, 9})
	f.Add([]byte("registrations and deregistrations of many elements"))
	algs := policy.All()
	f.Fuzz(func(t *testing.T, ops []byte) {
		h := newHS(t, Config{DrainTimeout: time.Second, MaxBadPEReports: 2, Seed: 7})
		now := t0
		for len(ops) >= 3 {
			op, a, b := ops[0], ops[1], ops[2]
			ops = ops[3:]
			handle := fmt.Sprintf("p%d", a%3)
			id := uint32(b%6) + 1
			switch op % 8 {
			case 0, 1:
				s := policy.Settings{Type: algs[int(a/3)%len(algs)].Type, Weight: uint32(b % 4), Load: uint32(b) << 24, LoadDegradation: uint32(a) << 20, LoadDPF: uint32(b), WeightDPF: uint32(a) << 16, Distance: uint32(a % 5)}
				el := mkPE(id, s)
				el.Home = uint32(op>>3)%3 + 1
				el.Lifetime = time.Duration(b%4) * time.Second
				if op&0x40 != 0 {
					el.Transport.Protocol = UDP
				}
				if op%8 == 0 {
					h.Register(handle, el, now)
				} else {
					h.Update(handle, el, now)
				}
			case 2:
				h.Deregister(handle, id, now)
			case 3:
				h.Remove(handle, id, ReasonKeepAlive)
			case 4:
				h.ReportUnreachable(handle, id)
			case 5:
				n := int(b%5) - 1 // -1 is All
				got, err := h.Resolve(handle, n, nil)
				active := h.Elements(handle)
				if err != nil {
					if len(active) != 0 {
						t.Fatalf("resolve %s failed with %d active: %v", handle, len(active), err)
					}
					continue
				}
				seen := map[uint32]bool{}
				for _, e := range got {
					if seen[e.ID] || e.State != Active {
						t.Fatalf("resolution %v repeats or returns inactive", ids(got))
					}
					seen[e.ID] = true
				}
				if n > 0 && len(got) > n || len(got) > len(active) {
					t.Fatalf("asked %d of %d, got %d", n, len(active), len(got))
				}
			case 6:
				h.TakeOver(uint32(a%3)+1, uint32(b%3)+1)
			case 7:
				now = now.Add(time.Duration(b) * 20 * time.Millisecond)
				h.Sweep(now)
			}
			checkInvariants(t, h)
		}
	})
}

func checkInvariants(t *testing.T, h *Handlespace) {
	t.Helper()
	want := recompute(h)
	var all uint64
	for home := uint32(1); home <= 3; home++ {
		all += want[home]
		if got := h.Checksum(home); got != finishChecksum(want[home]) {
			t.Fatalf("home %d checksum %#x, recomputed %#x", home, got, finishChecksum(want[home]))
		}
	}
	if got := h.HandlespaceChecksum(); got != finishChecksum(all) {
		t.Fatalf("total checksum %#x, recomputed %#x", got, finishChecksum(all))
	}
	n := 0
	for _, handle := range h.Pools() {
		active := h.Elements(handle)
		n += len(active)
		ss, ok := h.SteeringSet(handle)
		if !ok {
			t.Fatalf("pool %s listed without steering set", handle)
		}
		draining := 0
		for _, m := range ss.Members {
			if m.State == Draining {
				draining++
				if m.Weight != 0 {
					t.Fatalf("draining member %d has weight %d", m.ID, m.Weight)
				}
			}
		}
		if len(ss.Members)-draining != len(active) {
			t.Fatalf("pool %s: %d active in steering set, %d in pool", handle, len(ss.Members)-draining, len(active))
		}
		for i := 1; i < len(active); i++ {
			if active[i].Transport.Protocol != active[0].Transport.Protocol || active[i].Policy.Type != active[0].Policy.Type {
				t.Fatalf("pool %s inconsistent: %+v vs %+v", handle, active[0], active[i])
			}
		}
	}
	if n != h.Len() {
		t.Fatalf("Len %d, elements %d", h.Len(), n)
	}
}
