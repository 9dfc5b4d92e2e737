package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
)

func TestFlowFeedbackDegradesBusyPE(t *testing.T) {
	now := time.Unix(1000, 0)
	hs, _ := selector.New(selector.Config{})
	v, _ := ParseVIP("web=10.200.1.1:80/tcp")
	lud := policy.LeastUsedDegradation(policy.MaxLoad/10, policy.MaxLoad/100)
	for _, id := range []uint32{1, 2} {
		p := pe(id, lud, fmt.Sprintf("10.0.0.%d", id))
		if _, err := hs.Register("web", p, now); err != nil {
			t.Fatal(err)
		}
	}
	dp := newFakeDP()
	s := NewSyncer(hs, dp, []VIP{v}, false, nil)
	if _, err := s.Start(0); err != nil {
		t.Fatal(err)
	}
	sub := hs.Subscribe()
	defer sub.Close()
	f := newFlowFeedback(hs, []VIP{v})
	stats := func(a, b uint64) loader.Stats {
		return loader.Stats{Backends: map[loader.ServiceKey]map[uint32]loader.BackendCounters{
			v.Key(): {1: {NewFlows: a}, 2: {NewFlows: b}}}}
	}
	if n := f.step(stats(500, 7)); n != 0 {
		t.Fatalf("first step charged %d PEs with flows from before the node started", n)
	}
	if n := f.step(stats(540, 7)); n != 1 {
		t.Fatalf("40 new flows on PE 1 changed %d PEs, want 1", n)
	}
	if err := s.Apply(sub.Drain()); err != nil {
		t.Fatal(err)
	}
	w := map[uint32]uint32{}
	for _, b := range dp.svcs[v.Key()] {
		w[b.ID] = b.Weight
	}
	// PE 1 at 10% + 40 x 1% = 50% load, PE 2 at 10%: weights 0.5 : 0.9.
	if got := float64(w[1]) / float64(w[2]); got < 0.55 || got > 0.57 {
		t.Fatalf("data plane weights after the feedback: %v (ratio %.3f, want 0.556)", w, got)
	}
	if n := f.step(stats(540, 7)); n != 0 {
		t.Fatalf("no new flows changed %d PEs", n)
	}
}
