package enrp

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Benchmarks through the real TCP path on loopback. They print their
// figures with b.ReportMetric; run with
//
//	go test -run '^$' -bench 'TCP' -benchtime 20000x -count 3 ./enrp
//	go test -run '^$' -bench 'Death|Memory' -benchtime 20x ./enrp

const benchClients = 64

// runClients spreads n requests over clients connections to addr, each
// issuing mk(i) and waiting for the answer; it returns per-request latencies.
func runClients(b *testing.B, addr string, clients, n int, mk func(i int) Message, check func(Message) error) []time.Duration {
	b.Helper()
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		r := dialRPC(b, addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t0 := time.Now()
				resp, err := r.call(ctx, mk(i))
				lat[i] = time.Since(t0)
				if err == nil {
					err = check(resp)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return lat
}

// cpuTime returns the process's user+system CPU time: on a shared machine
// it shows what an operation costs independently of the CPU share we got.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func percentile(lat []time.Duration, p float64) time.Duration {
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

func BenchmarkRegistrationTCP(b *testing.B) {
	nodes := startCluster(b, 3, func(c *ServerConfig) {
		c.KeepAliveInterval, c.KeepAliveTimeout = time.Minute, time.Minute
		c.Logger = quietLogger()
	})
	waitPeers(b, nodes)
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	lat := runClients(b, nodes[0].srv.ASAPAddr().String(), benchClients, b.N,
		func(i int) Message {
			return Registration{Handle: fmt.Sprintf("pool-%d", i%500), PE: testPE(uint32(i + 1))}
		},
		func(m Message) error {
			if r, ok := m.(RegistrationResponse); !ok || r.Reject {
				return fmt.Errorf("registration failed: %#v", m)
			}
			return nil
		})
	el, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	// CPU per operation, clients and registrars together (one process).
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(100*cpu.Seconds()/el.Seconds(), "cpu-%")
	b.ReportMetric(float64(b.N)/el.Seconds(), "reg/s")
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
	// Replication: how long until both peers hold every PE.
	if d, err := eventually(time.Minute, func() bool { return converged(servers(nodes...), b.N) }); err == nil {
		b.ReportMetric(float64(d.Milliseconds()), "replication-lag-ms")
	}
}

// BenchmarkResolutionTCP runs with 64 concurrent clients (throughput) and
// with 8 (latency: with c requests always outstanding, Little's law puts
// the mean latency at c / throughput, so p99 under 1 ms needs few).
func BenchmarkResolutionTCP(b *testing.B) {
	for _, clients := range []int{benchClients, 8} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchResolution(b, clients) })
	}
}

func benchResolution(b *testing.B, clients int) {
	cfg := itConfig(1)
	cfg.KeepAliveInterval, cfg.KeepAliveTimeout = time.Minute, time.Minute
	n := startNode(b, cfg)
	// 500 pools of 10 PEs, registered through the core directly: the
	// benchmark measures resolution, not setup.
	n.srv.mu.Lock()
	for p := 0; p < 500; p++ {
		for i := 0; i < 10; i++ {
			n.srv.core.Step(0, netip.Addr{}, Registration{Handle: fmt.Sprintf("pool-%d", p), PE: testPE(uint32(p*10 + i + 1))})
		}
	}
	n.srv.core.Drain()
	n.srv.mu.Unlock()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	lat := runClients(b, n.srv.ASAPAddr().String(), clients, b.N,
		func(i int) Message { return HandleResolution{Handle: fmt.Sprintf("pool-%d", i%500)} },
		func(m Message) error {
			if r, ok := m.(HandleResolutionResponse); !ok || len(r.PEs) != 3 {
				return fmt.Errorf("resolution failed: %#v", m)
			}
			return nil
		})
	el, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	// CPU per operation, clients and registrars together (one process).
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(100*cpu.Seconds()/el.Seconds(), "cpu-%")
	b.ReportMetric(float64(b.N)/el.Seconds(), "res/s")
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
}

// BenchmarkPEDeathToRemoval measures, per dead PE, the time from its death
// to its removal at every one of 3 registrars, at keep-alive interval and
// timeout 100 ms each (so the bound is about 200 ms plus detection jitter).
func BenchmarkPEDeathToRemoval(b *testing.B) {
	nodes := startCluster(b, 3, nil)
	waitPeers(b, nodes)
	var worst, sum time.Duration
	for i := 0; i < b.N; i++ {
		p := startPE(b, nodes[i%3].srv.ASAPAddr().String(), "death", uint32(1000+i))
		p.await(b)
		if _, err := eventually(5*time.Second, func() bool { return converged(servers(nodes...), 1) }); err != nil {
			b.Fatal("PE not replicated")
		}
		start := time.Now()
		p.kill()
		if _, err := eventually(5*time.Second, func() bool { return converged(servers(nodes...), 0) }); err != nil {
			b.Fatal("dead PE not removed")
		}
		d := time.Since(start)
		sum += d
		worst = max(worst, d)
	}
	b.ReportMetric(float64(sum.Milliseconds())/float64(b.N), "avg-ms")
	b.ReportMetric(float64(worst.Milliseconds()), "max-ms")
}

// BenchmarkMemoryPerPE reports the heap the registrar keeps per PE
// (handlespace, selection state and keep-alive bookkeeping).
func BenchmarkMemoryPerPE(b *testing.B) {
	const n = 20000
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c, err := NewCore(testConfig(1), time.Now())
		if err != nil {
			b.Fatal(err)
		}
		for j := 0; j < n; j++ {
			c.Step(LinkID(j+1), netip.Addr{}, Registration{Handle: fmt.Sprintf("pool-%d", j%500), PE: testPE(uint32(j + 1))})
			c.Drain()
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/PE")
		runtime.KeepAlive(c)
	}
}

func waitPeers(b testing.TB, nodes []*node) {
	if _, err := eventually(3*time.Second, func() bool {
		for _, n := range nodes {
			if len(n.srv.Peers()) != len(nodes)-1 {
				return false
			}
		}
		return true
	}); err != nil {
		b.Fatal("registrars did not find each other")
	}
}
