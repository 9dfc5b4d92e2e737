package loader

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/rspxdp/rspxdp/loader/maglev"
)

// syntheticFlows returns n distinct client flows to one VIP, reproducibly.
func syntheticFlows(n int) []Flow {
	rng := rand.New(rand.NewPCG(1, 2))
	vip := netip.MustParseAddrPort("10.200.1.1:80")
	out := make([]Flow, n)
	seen := map[Flow]bool{}
	for i := 0; i < n; {
		var a [4]byte
		v := rng.Uint32()
		a[0], a[1], a[2], a[3] = 100, byte(v>>16), byte(v>>8), byte(v)
		f := Flow{Src: netip.AddrPortFrom(netip.AddrFrom4(a), uint16(1024+rng.IntN(64000))), Dst: vip, Proto: TCP}
		if seen[f] {
			continue
		}
		seen[f] = true
		out[i] = f
		i++
	}
	return out
}

// assign maps each flow to a member key through a Maglev table, as the data
// path does for new flows.
func assign(t *testing.T, members []maglev.Member, flows []Flow) []uint64 {
	t.Helper()
	table, err := maglev.Build(members, maglev.DefaultSize, DefaultSeed)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]uint64, len(flows))
	for i, f := range flows {
		out[i] = members[table[FlowHash(f, DefaultSeed)%maglev.DefaultSize]].Key
	}
	return out
}

// TestWeightedDistribution: 100,000 flows over weights 1:2:3 land within
// one percentage point of 1/6, 2/6, 3/6.
func TestWeightedDistribution(t *testing.T) {
	flows := syntheticFlows(100000)
	members := []maglev.Member{{Key: 101, Weight: 1}, {Key: 102, Weight: 2}, {Key: 103, Weight: 3}}
	count := map[uint64]int{}
	for _, k := range assign(t, members, flows) {
		count[k]++
	}
	for _, m := range members {
		got := float64(count[m.Key]) / float64(len(flows))
		want := float64(m.Weight) / 6
		t.Logf("PE %d weight %d: %.2f%% of flows (target %.2f%%, off by %+.2f points)", m.Key, m.Weight, 100*got, 100*want, 100*(got-want))
		if d := got - want; d > 0.01 || d < -0.01 {
			t.Errorf("PE %d: %.4f of flows, want %.4f ± 0.01", m.Key, got, want)
		}
	}
}

// TestRemovalDisruption: removing one of N equal PEs moves the flows it
// had (1/N) and hardly any other: at most 1/N + 1 point in total.
func TestRemovalDisruption(t *testing.T) {
	flows := syntheticFlows(100000)
	for _, n := range []int{3, 5, 10, 50, 1000} {
		members := make([]maglev.Member, n)
		for i := range members {
			members[i] = maglev.Member{Key: uint64(1000 + i), Weight: 1}
		}
		before := assign(t, members, flows)
		gone := members[n/2].Key
		after := assign(t, append(append([]maglev.Member(nil), members[:n/2]...), members[n/2+1:]...), flows)
		moved, collateral := 0, 0
		for i := range flows {
			if before[i] != after[i] {
				moved++
				if before[i] != gone {
					collateral++
				}
			}
		}
		frac := float64(moved) / float64(len(flows))
		bound := 1/float64(n) + 0.01
		t.Logf("N=%4d remove 1: %.2f%% of flows moved (1/N = %.2f%%, bound %.2f%%), %.2f%% moved between surviving PEs",
			n, 100*frac, 100/float64(n), 100*bound, 100*float64(collateral)/float64(len(flows)))
		if frac > bound {
			t.Errorf("N=%d: %.4f of flows moved, want at most %.4f", n, frac, bound)
		}
	}
}

// TestFlowHashStable pins the hash: changing it would make nodes running
// different rspxdp versions disagree, and must break this test (and
// bpf/lb.c must change with it).
func TestFlowHashStable(t *testing.T) {
	cases := []struct {
		f    Flow
		seed uint32
		want uint32
	}{
		{Flow{netip.MustParseAddrPort("192.168.1.10:31337"), netip.MustParseAddrPort("10.200.1.1:80"), TCP}, DefaultSeed, 0x37e5c4ce},
		{Flow{netip.MustParseAddrPort("[fc00:2::10]:31337"), netip.MustParseAddrPort("[fc00:1::1]:80"), TCP}, DefaultSeed, 0x91d5f29c},
		{Flow{netip.MustParseAddrPort("192.168.1.10:31337"), netip.MustParseAddrPort("10.200.1.1:80"), UDP}, 1, 0xa0fe3296},
	}
	for _, c := range cases {
		if got := FlowHash(c.f, c.seed); got != c.want {
			t.Errorf("FlowHash(%v, %#x) = %#x, want %#x", c.f, c.seed, got, c.want)
		}
	}
}
