package selector

import (
	"net/netip"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/selector/policy"
)

// The data plane's new flows degrade a least-used-with-degradation element
// like resolutions do: its steering weight falls as it takes flows, the
// change is published, and its next re-registration (with its real load)
// resets it. Policies without degradation ignore flows.
func TestObserveFlowsDegradesSteering(t *testing.T) {
	now := time.Unix(1000, 0)
	hs, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	el := func(id uint32, s policy.Settings) PoolElement {
		return PoolElement{ID: id, Home: 1, Policy: s, Lifetime: time.Minute,
			Transport: Transport{Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(id)})}, Port: 7, Protocol: TCP}}
	}
	// Load 10% each, 1% degradation per flow.
	lud := policy.LeastUsedDegradation(policy.MaxLoad/10, policy.MaxLoad/100)
	for _, id := range []uint32{1, 2} {
		if _, err := hs.Register("lud", el(id, lud), now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := hs.Register("rr", el(3, policy.RoundRobin()), now); err != nil {
		t.Fatal(err)
	}
	weight := func(handle string, id uint32) uint32 {
		set, _ := hs.SteeringSet(handle)
		for _, m := range set.Members {
			if m.ID == id {
				return m.Weight
			}
		}
		t.Fatalf("%s: no PE %d", handle, id)
		return 0
	}
	w1, w2 := weight("lud", 1), weight("lud", 2)
	if w1 != w2 {
		t.Fatalf("equal loads, weights %d and %d", w1, w2)
	}
	sub := hs.Subscribe()
	defer sub.Close()
	changed, err := hs.ObserveFlows("lud", 1, 40)
	if err != nil || !changed {
		t.Fatalf("ObserveFlows: %v %v", changed, err)
	}
	// 40 flows at 1% each: PE 1 is at 50% load for steering, PE 2 at 10%.
	if got, want := float64(weight("lud", 1))/float64(weight("lud", 2)), 0.5/0.9; got < want-0.01 || got > want+0.01 {
		t.Errorf("after 40 flows: weight ratio %.3f, want %.3f", got, want)
	}
	if ch := sub.Drain(); len(ch) != 1 || ch[0].Handle != "lud" || ch[0].Kinds&WeightsChanged == 0 {
		t.Errorf("published %+v, want one WeightsChanged for lud", ch)
	}
	if changed, _ := hs.ObserveFlows("rr", 3, 1000); changed {
		t.Error("round robin took flow degradation")
	}
	// Resolutions do not move steering weights: only flows do.
	before := weight("lud", 2)
	if _, err := hs.Resolve("lud", 1, nil); err != nil {
		t.Fatal(err)
	}
	if weight("lud", 2) != before {
		t.Error("a resolution changed the steering weights without an event")
	}
	// Re-registration resets the flow degradation.
	if _, err := hs.Register("lud", el(1, lud), now); err != nil {
		t.Fatal(err)
	}
	if weight("lud", 1) != weight("lud", 2) {
		t.Errorf("after re-registration: weights %d and %d", weight("lud", 1), weight("lud", 2))
	}
	if ch := sub.Drain(); len(ch) == 0 || ch[len(ch)-1].Kinds&WeightsChanged == 0 {
		t.Errorf("re-registration that reset degradation published %+v", ch)
	}
}
