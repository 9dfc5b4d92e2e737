package selector

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/selector/policy"
)

// TestConcurrentReadersAndWriters hammers one handlespace from resolvers,
// steering-set readers, registrations, deregistrations, reports and
// sweeps at once; run with -race. Every resolution must return distinct,
// currently plausible elements, and the checksum must still equal a
// recomputation at the end.
func TestConcurrentReadersAndWriters(t *testing.T) {
	h := newHS(t, Config{DrainTimeout: time.Second, Seed: 3})
	pols := []policy.Settings{policy.RoundRobin(), policy.WeightedRoundRobin(3), policy.LeastUsed(7), policy.WeightedRandom(2)}
	for p := range 8 {
		for id := uint32(1); id <= 20; id++ {
			mustRegister(t, h, fmt.Sprintf("p%d", p), mkPE(id, pols[p%4]), t0)
		}
	}
	sub := h.Subscribe()
	var stop atomic.Bool
	var resolutions atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]PoolElement, 0, 8)
			for i := 0; !stop.Load(); i++ {
				handle := fmt.Sprintf("p%d", (i+r)%8)
				var err error
				buf, err = h.Resolve(handle, 3, buf[:0])
				if err != nil {
					continue // pool may be momentarily empty
				}
				seen := map[uint32]bool{}
				for _, e := range buf {
					if seen[e.ID] || e.ID == 0 || e.ID > 40 {
						errs <- fmt.Errorf("bad resolution %v", ids(buf))
						return
					}
					seen[e.ID] = true
				}
				resolutions.Add(1)
				if i%64 == 0 {
					h.SteeringSet(handle)
				}
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 20000; i++ {
			handle := fmt.Sprintf("p%d", i%8)
			id := uint32(i%40 + 1)
			now := t0.Add(time.Duration(i) * time.Millisecond)
			switch i % 5 {
			case 0, 1, 2:
				h.Register(handle, mkPE(id, pols[(i%8)%4]), now)
			case 3:
				h.Deregister(handle, id, now)
			case 4:
				h.ReportUnreachable(handle, id)
				h.Sweep(now)
			}
		}
		stop.Store(true)
	}()
	go func() {
		defer wg.Done()
		for !stop.Load() {
			sub.Drain()
			h.Checksum(1)
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if resolutions.Load() == 0 {
		t.Fatal("no resolution completed")
	}
	want := recompute(h)
	if got := h.Checksum(1); got != finishChecksum(want[1]) {
		t.Fatalf("checksum %#x, recomputed %#x", got, finishChecksum(want[1]))
	}
	t.Logf("%d resolutions alongside 20000 writes", resolutions.Load())
}

// TestReadersDoNotTakeWriterLock holds the writers' lock, as a long
// registration burst would, and checks resolution, steering sets and
// lookups still complete: readers never queue behind writers of other
// pools.
func TestReadersDoNotTakeWriterLock(t *testing.T) {
	h := newHS(t, Config{})
	mustRegister(t, h, "p", mkPE(1, policy.RoundRobin()), t0)
	h.mu.Lock()
	defer h.mu.Unlock()
	done := make(chan error)
	go func() {
		if _, err := h.Resolve("p", 0, nil); err != nil {
			done <- err
			return
		}
		if _, ok := h.SteeringSet("p"); !ok {
			done <- fmt.Errorf("no steering set")
			return
		}
		if _, ok := h.Lookup("p", 1); !ok {
			done <- fmt.Errorf("lookup failed")
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("readers blocked behind the writer lock")
	}
}
