package transport

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// The per-message path must not allocate: a server answers tens of
// thousands of messages per second, and garbage there shows up as GC work
// in the latency tail. This covers the echo server's side too (AllocsPerRun
// counts the whole process), so it runs alone, not in the parallel suite.
func TestSteadyRoundTripAllocations(t *testing.T) {
	forEachRig(t, func(t *testing.T, r rig) {
		// A cancellable context, as servers use: the case that used to
		// register an AfterFunc with it for every message.
		ctx, c := dialEcho(t, r)
		m := msg(0x05, 32, 1)
		roundTrip := func() {
			if err := c.WriteMessage(ctx, m); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ReadMessage(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for range 10 {
			roundTrip()
		}
		// TLS records cost crypto/tls a couple of small allocations.
		limit := 0.0
		if r.name == "tls" {
			limit = 4
		}
		if got := testing.AllocsPerRun(200, roundTrip); got > limit {
			t.Errorf("%v allocations per round trip, want <= %v", got, limit)
		}
	})
}

func TestWatcher(t *testing.T) {
	var fired atomic.Int32
	w := newWatcher(func() { fired.Add(1) })

	// Re-arming for the same context registers nothing new: one
	// cancellation interrupts once.
	ctx, cancel := context.WithCancel(context.Background())
	for range 100 {
		w.arm(ctx)
	}
	cancel()
	waitFor(t, func() bool { return fired.Load() == 1 })

	// A new context replaces the old one, waiting out its interrupt.
	ctx2, cancel2 := context.WithCancel(context.Background())
	w.arm(ctx2)
	if w.done != ctx2.Done() {
		t.Fatal("watcher not armed for the new context")
	}
	cancel2()
	waitFor(t, func() bool { return fired.Load() == 2 })

	// A context that cannot end arms nothing.
	w.arm(context.Background())
	if w.stop != nil {
		t.Fatal("armed for a context without Done")
	}

	// After close nothing stays registered: cancelling does not interrupt,
	// and arming again is refused.
	ctx3, cancel3 := context.WithCancel(context.Background())
	w.arm(ctx3)
	w.close()
	w.arm(ctx3)
	cancel3()
	time.Sleep(20 * time.Millisecond) // give a wrongly registered interrupt time to run
	if n := fired.Load(); n != 2 {
		t.Fatalf("interrupt ran %d times, want 2 (none after close)", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
