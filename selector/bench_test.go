package selector

import (
	"fmt"
	"net/netip"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/selector/policy"
)

// The reference shape of the issue: 500 pools x 100 elements.
const (
	benchPools   = 500
	benchPerPool = 100
)

func benchHandles(n int) []string {
	hs := make([]string, n)
	for i := range hs {
		hs[i] = fmt.Sprintf("pool-%04d.example", i)
	}
	return hs
}

func benchPE(id uint32, s policy.Settings) PoolElement {
	return PoolElement{
		ID: id, Home: 1,
		Transport: Transport{Addrs: []netip.Addr{
			netip.AddrFrom4([4]byte{10, byte(id >> 16), byte(id >> 8), byte(id)}),
			netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(id >> 24), 13: byte(id >> 16), 14: byte(id >> 8), 15: byte(id)}),
		}, Port: 7, Protocol: SCTP},
		Policy: s, Lifetime: 30 * time.Second,
	}
}

// benchSettings varies the policy values per element so ordered policies
// really sort.
func benchSettings(t policy.Type, i int) policy.Settings {
	return policy.Settings{Type: t, Weight: uint32(i%7 + 1), Load: uint32(i%13) * 1000, LoadDegradation: 50, LoadDPF: 10, WeightDPF: 1000, Distance: uint32(i % 5)}
}

func fill(b *testing.B, h *Handlespace, handles []string, perPool int, t policy.Type) {
	b.Helper()
	for i, handle := range handles {
		for j := range perPool {
			if _, err := h.Register(handle, benchPE(uint32(j+1), benchSettings(t, i+j)), t0); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// perSecond reports the wall-clock rate, and the process CPU time per
// operation since the last ResetTimer-equivalent mark: on this shared
// 2-core machine other jobs inflate wall time, CPU time shows what the
// operation itself costs.
func perSecond(b *testing.B, unit string) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
	if mark, ok := cpuMark[b.Name()]; ok {
		b.ReportMetric(float64(cpuNow()-mark)/float64(b.N), "cpu-ns/op")
	}
}

// cpuMark records process CPU time at the start of each benchmark run,
// keyed by benchmark name (sub-benchmarks run sequentially).
var cpuMark = map[string]int64{}

func cpuNow() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// startCPU marks the start of the measured loop (call right after
// ResetTimer).
func startCPU(b *testing.B) { cpuMark[b.Name()] = cpuNow() }

// pause and resume bracket untimed set-up inside the loop, keeping it out
// of both the wall and the CPU figures.
func pause(b *testing.B) int64 {
	b.StopTimer()
	return cpuNow()
}

func resume(b *testing.B, paused int64) {
	cpuMark[b.Name()] += cpuNow() - paused
	b.StartTimer()
}

// sizes scales the handlespace from 1,000 to 100,000 elements at 100 per
// pool (10 to 1,000 pools).
var sizes = []int{1_000, 10_000, 50_000, 100_000}

func BenchmarkRegister(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("pes=%d", n), func(b *testing.B) {
			handles := benchHandles(n / benchPerPool)
			els := make([]PoolElement, n)
			for i := range els {
				els[i] = benchPE(uint32(i/len(handles)+1), policy.RoundRobin())
			}
			var h *Handlespace
			b.ReportAllocs()
			startCPU(b)
			for i := range b.N {
				k := i % n
				if k == 0 {
					p := pause(b)
					h = newHS(b, Config{})
					runtime.GC()
					resume(b, p)
				}
				if _, err := h.Register(handles[k%len(handles)], els[k], t0); err != nil {
					b.Fatal(err)
				}
			}
			perSecond(b, "registrations/s")
		})
	}
}

// BenchmarkRegisterSubscribed is registration into the 500 x 100
// handlespace with the data-plane sync subscribed, i.e. including event
// publication and coalescing (drained every 1,000 registrations).
func BenchmarkRegisterSubscribed(b *testing.B) {
	n := benchPools * benchPerPool
	handles := benchHandles(benchPools)
	els := make([]PoolElement, n)
	for i := range els {
		els[i] = benchPE(uint32(i/benchPools+1), policy.RoundRobin())
	}
	var h *Handlespace
	var sub *Subscription
	b.ReportAllocs()
	startCPU(b)
	for i := range b.N {
		k := i % n
		if k == 0 {
			p := pause(b)
			h = newHS(b, Config{})
			sub = h.Subscribe()
			runtime.GC()
			resume(b, p)
		}
		if _, err := h.Register(handles[k%benchPools], els[k], t0); err != nil {
			b.Fatal(err)
		}
		if k%1000 == 999 {
			sub.Drain()
		}
	}
	perSecond(b, "registrations/s")
}

func BenchmarkRefresh(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("pes=%d", n), func(b *testing.B) {
			handles := benchHandles(n / benchPerPool)
			h := newHS(b, Config{})
			fill(b, h, handles, benchPerPool, policy.TypeRoundRobin)
			els := make([]PoolElement, benchPerPool)
			for j := range els {
				els[j] = benchPE(uint32(j+1), policy.RoundRobin())
			}
			b.ReportAllocs()
			b.ResetTimer()
			startCPU(b)
			for i := range b.N {
				el := els[(i/len(handles))%benchPerPool]
				// Every refresh extends the lifetime: the element moves to
				// the far end of the expiry heap, the worst case.
				if _, err := h.Register(handles[i%len(handles)], el, t0.Add(time.Duration(i))); err != nil {
					b.Fatal(err)
				}
			}
			perSecond(b, "refreshes/s")
		})
	}
}

func BenchmarkDeregister(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("pes=%d", n), func(b *testing.B) {
			handles := benchHandles(n / benchPerPool)
			var h *Handlespace
			b.ReportAllocs()
			startCPU(b)
			for i := range b.N {
				k := i % n
				if k == 0 {
					p := pause(b)
					h = newHS(b, Config{})
					fill(b, h, handles, benchPerPool, policy.TypeRoundRobin)
					runtime.GC()
					resume(b, p)
				}
				if _, err := h.Deregister(handles[k%len(handles)], uint32(k/len(handles)+1), t0); err != nil {
					b.Fatal(err)
				}
			}
			perSecond(b, "deregistrations/s")
		})
	}
}

// BenchmarkResolve resolves 3 elements per call, cycling over the 500
// pools, for every policy.
func BenchmarkResolve(b *testing.B) {
	handles := benchHandles(benchPools)
	for _, a := range policy.All() {
		b.Run(a.Name, func(b *testing.B) {
			h := newHS(b, Config{Seed: 1})
			fill(b, h, handles, benchPerPool, a.Type)
			buf := make([]PoolElement, 0, 3)
			b.ReportAllocs()
			b.ResetTimer()
			startCPU(b)
			for i := range b.N {
				var err error
				if buf, err = h.Resolve(handles[i%benchPools], 3, buf[:0]); err != nil || len(buf) != 3 {
					b.Fatal(err, len(buf))
				}
			}
			perSecond(b, "resolutions/s")
		})
	}
}

// BenchmarkResolveScaling is Round Robin, WRR and LU resolution from 1,000
// to 100,000 elements.
func BenchmarkResolveScaling(b *testing.B) {
	for _, t := range []policy.Type{policy.TypeRoundRobin, policy.TypeWeightedRoundRobin, policy.TypeLeastUsed} {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/pes=%d", t, n), func(b *testing.B) {
				handles := benchHandles(n / benchPerPool)
				h := newHS(b, Config{})
				fill(b, h, handles, benchPerPool, t)
				buf := make([]PoolElement, 0, 3)
				b.ReportAllocs()
				b.ResetTimer()
				startCPU(b)
				for i := range b.N {
					buf, _ = h.Resolve(handles[i%len(handles)], 3, buf[:0])
				}
				perSecond(b, "resolutions/s")
			})
		}
	}
}

// BenchmarkResolveHotScaling resolves from the same 10 pools while the
// handlespace around them grows from 1,000 to 100,000 elements: the
// algorithmic cost, without the cache misses that cycling over every pool
// of a large handlespace adds in BenchmarkResolveScaling.
func BenchmarkResolveHotScaling(b *testing.B) {
	for _, t := range []policy.Type{policy.TypeRoundRobin, policy.TypeWeightedRoundRobin, policy.TypeLeastUsed} {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/pes=%d", t, n), func(b *testing.B) {
				handles := benchHandles(n / benchPerPool)
				h := newHS(b, Config{})
				fill(b, h, handles, benchPerPool, t)
				hot := handles[:10]
				buf := make([]PoolElement, 0, 3)
				b.ReportAllocs()
				b.ResetTimer()
				startCPU(b)
				for i := range b.N {
					buf, _ = h.Resolve(hot[i%len(hot)], 3, buf[:0])
				}
				perSecond(b, "resolutions/s")
			})
		}
	}
}

// BenchmarkSweep measures expiring elements: each op is one expired
// element, removed by Sweep in batches of 1,000 from a full handlespace.
func BenchmarkSweep(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("pes=%d", n), func(b *testing.B) {
			handles := benchHandles(n / benchPerPool)
			expired := 0
			h := newHS(b, Config{OnExpire: func(string, PoolElement) { expired++ }})
			var deadline time.Time
			refill := func() {
				h = newHS(b, Config{OnExpire: func(string, PoolElement) { expired++ }})
				for i, handle := range handles {
					for j := range benchPerPool {
						el := benchPE(uint32(j+1), policy.RoundRobin())
						// Distinct lifetimes: k-th element expires at k ms.
						el.Lifetime = time.Duration(j*len(handles)+i+1) * time.Millisecond
						h.Register(handle, el, t0)
					}
				}
				deadline = t0
				runtime.GC()
			}
			b.ReportAllocs()
			b.StopTimer()
			refill()
			b.StartTimer()
			startCPU(b)
			for done := 0; done < b.N; {
				if h.Len() == 0 {
					p := pause(b)
					refill()
					resume(b, p)
				}
				batch := min(1000, b.N-done)
				deadline = deadline.Add(time.Duration(batch) * time.Millisecond)
				done += h.Sweep(deadline)
			}
			if expired < b.N {
				b.Fatalf("callback %d times for %d", expired, b.N)
			}
			perSecond(b, "expiries/s")
		})
	}
}

// BenchmarkMemoryPerPE reports heap bytes per registered element (2
// addresses each, no UserData), measured with runtime.MemStats around
// building the handlespace.
func BenchmarkMemoryPerPE(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("pes=%d", n), func(b *testing.B) {
			handles := benchHandles(n / benchPerPool)
			var perPE float64
			for range b.N {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				h := newHS(b, Config{})
				fill(b, h, handles, benchPerPool, policy.TypeWeightedRoundRobin)
				runtime.GC()
				runtime.ReadMemStats(&after)
				perPE = float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
				runtime.KeepAlive(h)
			}
			b.ReportMetric(perPE, "B/PE")
		})
	}
}

// BenchmarkResolveParallel runs resolutions from all Ps (b.RunParallel),
// alone and with a writer goroutine registering, refreshing and
// deregistering non-stop in the same pools. If readers serialized behind
// writers, the with-writer figure would collapse to the writer's rate.
func BenchmarkResolveParallel(b *testing.B) {
	handles := benchHandles(benchPools)
	for _, withWriter := range []bool{false, true} {
		b.Run(fmt.Sprintf("writer=%v", withWriter), func(b *testing.B) {
			h := newHS(b, Config{})
			fill(b, h, handles, benchPerPool, policy.TypeRoundRobin)
			var stop atomic.Bool
			var writes atomic.Int64
			done := make(chan struct{})
			if withWriter {
				go func() {
					defer close(done)
					for i := 0; !stop.Load(); i++ {
						handle := handles[i%benchPools]
						id := uint32(benchPerPool + 1 + (i/benchPools)%50)
						if i%2 == 0 {
							h.Register(handle, benchPE(id, policy.RoundRobin()), t0)
						} else {
							h.Deregister(handle, id, t0)
						}
						writes.Add(1)
					}
				}()
			} else {
				close(done)
			}
			var ctr atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			startCPU(b)
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]PoolElement, 0, 3)
				i := int(ctr.Add(1)) * 7919
				for pb.Next() {
					buf, _ = h.Resolve(handles[i%benchPools], 3, buf[:0])
					i++
				}
			})
			b.StopTimer()
			stop.Store(true)
			<-done
			perSecond(b, "resolutions/s")
			b.ReportMetric(float64(writes.Load())/b.Elapsed().Seconds(), "writes/s")
		})
	}
}

// BenchmarkSteeringSet measures building one pool's steering set (100
// members), what the data-plane sync does once per coalesced change.
func BenchmarkSteeringSet(b *testing.B) {
	handles := benchHandles(benchPools)
	h := newHS(b, Config{})
	fill(b, h, handles, benchPerPool, policy.TypeLeastUsed)
	b.ReportAllocs()
	b.ResetTimer()
	startCPU(b)
	for i := range b.N {
		if ss, ok := h.SteeringSet(handles[i%benchPools]); !ok || len(ss.Members) != benchPerPool {
			b.Fatal("bad set")
		}
	}
	perSecond(b, "sets/s")
}
