package selector

import (
	"fmt"
	"testing"

	"github.com/rspxdp/rspxdp/selector/policy"
)

func TestEventsCoalescePerPool(t *testing.T) {
	h := newHS(t, Config{})
	sub := h.Subscribe()
	defer sub.Close()
	for id := uint32(1); id <= 100; id++ {
		mustRegister(t, h, "burst", mkPE(id, policy.WeightedRandom(1)), t0)
	}
	mustRegister(t, h, "other", mkPE(1, policy.RoundRobin()), t0)
	mustRegister(t, h, "burst", mkPE(5, policy.WeightedRandom(9)), t0) // weights
	mustRegister(t, h, "burst", mkPE(6, policy.WeightedRandom(1)), t0) // lifetime only: silent
	select {
	case <-sub.Ready():
	default:
		t.Fatal("not signalled")
	}
	ch := sub.Drain()
	if len(ch) != 2 || ch[0].Handle != "burst" || ch[1].Handle != "other" {
		t.Fatalf("got %d changes: %+v", len(ch), ch)
	}
	if ch[0].Kinds != Added|WeightsChanged || len(ch[0].Events) != 101 {
		t.Fatalf("burst: kinds %v, %d events", ch[0].Kinds, len(ch[0].Events))
	}
	if len(sub.Drain()) != 0 {
		t.Fatal("drain did not clear")
	}
	// More than maxEventsPerChange events: one change, marked overflow.
	for id := uint32(1000); id < 1000+maxEventsPerChange+10; id++ {
		mustRegister(t, h, "big", mkPE(id, policy.RoundRobin()), t0)
	}
	ch = sub.Drain()
	if len(ch) != 1 || !ch[0].Overflow || len(ch[0].Events) != maxEventsPerChange {
		t.Fatalf("overflow: %d changes, overflow=%v", len(ch), ch[0].Overflow)
	}
	sub.Close()
	mustRegister(t, h, "after", mkPE(1, policy.RoundRobin()), t0)
	if len(sub.Drain()) != 0 {
		t.Fatal("closed subscription received")
	}
}

// TestSyncLoopSeesFinalState runs a consumer the way the data-plane sync
// will: it must end up with every pool's final steering set, however the
// bursts were coalesced.
func TestSyncLoopSeesFinalState(t *testing.T) {
	h := newHS(t, Config{DrainTimeout: -1})
	sub := h.Subscribe()
	programmed := map[string]int{}
	done := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-sub.Ready():
			case <-stop:
				for _, c := range sub.Drain() {
					ss, _ := h.SteeringSet(c.Handle)
					programmed[c.Handle] = len(ss.Members)
				}
				return
			}
			for _, c := range sub.Drain() {
				ss, _ := h.SteeringSet(c.Handle)
				programmed[c.Handle] = len(ss.Members)
			}
		}
	}()
	for i := range 2000 {
		handle := fmt.Sprintf("p%d", i%10)
		id := uint32(i%37 + 1)
		if i%3 == 0 {
			h.Deregister(handle, id, t0)
		} else {
			h.Register(handle, mkPE(id, policy.RoundRobin()), t0)
		}
	}
	close(stop)
	<-done
	for i := range 10 {
		handle := fmt.Sprintf("p%d", i)
		if got, want := programmed[handle], len(h.Elements(handle)); got != want {
			t.Errorf("%s: programmed %d members, handlespace has %d", handle, got, want)
		}
	}
}

func TestTransportChangeIsStateChange(t *testing.T) {
	h := newHS(t, Config{})
	el := mkPE(1, policy.RoundRobin())
	el.Owner = "pe-1"
	mustRegister(t, h, "p", el, t0)
	sub := h.Subscribe()
	el.Transport.Addrs = append(el.Transport.Addrs[:0:0], addr(77))
	mustRegister(t, h, "p", el, t0)
	ch := sub.Drain()
	if len(ch) != 1 || ch[0].Kinds != StateChanged {
		t.Fatalf("events %+v", ch)
	}
	ss, _ := h.SteeringSet("p")
	if ss.Members[0].Transport.Addrs[0] != addr(77) {
		t.Fatalf("steering set has old address %v", ss.Members[0].Transport.Addrs)
	}
}
