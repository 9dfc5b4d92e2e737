package selector

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/rspxdp/rspxdp/selector/policy"
)

// splitmix64 is a fast, well-mixed 64-bit hash for synthetic flows.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// pickWeighted maps a flow to a member by weighted rendezvous hashing
// (score w / -ln(u)), the same shares a Maglev table built from the
// weights gives, without building one.
func pickWeighted(flow uint64, members []SteeringMember) int {
	best, bestScore := -1, 0.0
	for i, m := range members {
		if m.Weight == 0 {
			continue
		}
		h := splitmix64(flow ^ splitmix64(uint64(m.ID)))
		u := (float64(h>>11) + 0.5) / (1 << 53)
		score := float64(m.Weight) / -math.Log(u)
		if best < 0 || score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

func flowKey(i int) uint64 {
	// A synthetic 5-tuple: client 10.x.y.z:port -> VIP:80/tcp.
	var b [13]byte
	binary.BigEndian.PutUint32(b[0:], 0x0a000000|uint32(i/50000))
	binary.BigEndian.PutUint16(b[4:], uint16(1024+i%50000))
	binary.BigEndian.PutUint32(b[6:], 0xc0000201)
	binary.BigEndian.PutUint16(b[10:], 80)
	b[12] = 6
	h := uint64(1469598103934665603)
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return splitmix64(h)
}

// TestSteeringSharesFollowPolicy sends 100,000 flows over each policy's
// steering set and checks every element's share is within 1 % (absolute)
// of what the policy intends; element 9 is always draining and must get
// no new flow.
func TestSteeringSharesFollowPolicy(t *testing.T) {
	half, quarter := uint32(policy.MaxLoad/2), uint32(policy.MaxLoad/4)
	tests := []struct {
		name  string
		set   []policy.Settings
		share []float64 // intended share of new flows per element
	}{
		{"round robin", []policy.Settings{policy.RoundRobin(), policy.RoundRobin(), policy.RoundRobin()}, []float64{1. / 3, 1. / 3, 1. / 3}},
		{"random", []policy.Settings{policy.Random(), policy.Random(), policy.Random(), policy.Random()}, []float64{.25, .25, .25, .25}},
		{"weighted round robin 1:2:3", []policy.Settings{policy.WeightedRoundRobin(1), policy.WeightedRoundRobin(2), policy.WeightedRoundRobin(3)}, []float64{1. / 6, 2. / 6, 3. / 6}},
		{"weighted random 5:0:15", []policy.Settings{policy.WeightedRandom(5), policy.WeightedRandom(0), policy.WeightedRandom(15)}, []float64{.25, 0, .75}},
		{"priority", []policy.Settings{policy.Priority(1), policy.Priority(7), policy.Priority(7), policy.Priority(3)}, []float64{0, .5, .5, 0}},
		// Free capacity 100 %, 50 %, 25 % -> 4:2:1.
		{"least used", []policy.Settings{policy.LeastUsed(0), policy.LeastUsed(half), policy.LeastUsed(3 * quarter)}, []float64{4. / 7, 2. / 7, 1. / 7}},
		{"least used degradation", []policy.Settings{policy.LeastUsedDegradation(0, 100), policy.LeastUsedDegradation(half, 100), policy.LeastUsedDegradation(3*quarter, 100)}, []float64{4. / 7, 2. / 7, 1. / 7}},
		{"randomized least used", []policy.Settings{policy.RandomizedLeastUsed(half), policy.RandomizedLeastUsed(half)}, []float64{.5, .5}},
		// Load + load degradation 25 % and 75 % -> free 3:1.
		{"priority least used", []policy.Settings{policy.PriorityLeastUsed(0, quarter), policy.PriorityLeastUsed(half, quarter)}, []float64{.75, .25}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHS(t, Config{})
			for i, s := range tc.set {
				mustRegister(t, h, "vip", mkPE(uint32(i+1), s), t0)
			}
			drainer := mkPE(9, tc.set[0])
			mustRegister(t, h, "vip", drainer, t0)
			if _, err := h.Deregister("vip", 9, t0); err != nil {
				t.Fatal(err)
			}
			ss, ok := h.SteeringSet("vip")
			if !ok || len(ss.Members) != len(tc.set)+1 {
				t.Fatalf("steering set %+v", ss)
			}
			const flows = 100_000
			counts := make([]int, len(ss.Members))
			for i := range flows {
				if m := pickWeighted(flowKey(i), ss.Members); m >= 0 {
					counts[m]++
				}
			}
			for i, m := range ss.Members {
				got := float64(counts[i]) / flows
				want := 0.0
				if m.ID != 9 {
					want = tc.share[m.ID-1]
				}
				if math.Abs(got-want) > 0.01 {
					t.Errorf("element %d (weight %d, %s): share %.4f, want %.4f ±0.01", m.ID, m.Weight, m.State, got, want)
				}
				t.Logf("element %d weight %d %s: %.4f (intended %.4f)", m.ID, m.Weight, m.State, got, want)
			}
		})
	}
}

func TestSteeringWeightsFollowLoad(t *testing.T) {
	h := newHS(t, Config{})
	mustRegister(t, h, "p", mkPE(1, policy.LeastUsed(0)), t0)
	mustRegister(t, h, "p", mkPE(2, policy.LeastUsed(0)), t0)
	sub := h.Subscribe()
	ss1, _ := h.SteeringSet("p")
	mustRegister(t, h, "p", mkPE(2, policy.LeastUsed(policy.MaxLoad/2)), t0)
	ch := sub.Drain()
	if len(ch) != 1 || ch[0].Kinds != WeightsChanged {
		t.Fatalf("events %+v", ch)
	}
	ss2, _ := h.SteeringSet("p")
	if ss2.Version <= ss1.Version {
		t.Fatal("version not increased")
	}
	if w1, w2 := ss2.Members[0].Weight, ss2.Members[1].Weight; int64(w1)-2*int64(w2) > 1 || int64(w1)-2*int64(w2) < -1 {
		t.Fatalf("weights %d:%d, want 2:1", w1, w2)
	}
}
