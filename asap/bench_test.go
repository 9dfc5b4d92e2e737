package asap

import (
	"bufio"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkFailover measures, with registrar keep-alive 100 ms / 100 ms,
// the time from a PE's death (its process gone: listener and connections
// closed, no deregistration) to the pool user's first answer from another
// PE (failover-ms), and to the registrar no longer resolving the dead PE
// (removal-ms). Each iteration kills the PE the session is on and starts a
// replacement, so the pool always has two PEs.
//
//	go test -run '^$' -bench Failover -benchtime 20x ./asap
func BenchmarkFailover(b *testing.B) {
	rs := startRegistrars(b, 1)
	regs := addrs(rs)
	live := map[uint32]*echoPE{}
	for i := 0; i < 2; i++ {
		e := startEchoPE(b, "echo", regs)
		live[e.pe.ID()] = e
	}
	u, err := NewPoolUser(WithRegistrars(regs...), WithLogger(quiet()), WithCacheStaleness(0))
	if err != nil {
		b.Fatal(err)
	}
	defer u.Close()
	c, err := u.Dial(context.Background(), "echo")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	var fail, removal []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		victim := c.PE().ID
		start := time.Now()
		live[victim].pe.abort()
		delete(live, victim)
		ans, ev := echoRound(b, c, r, fmt.Sprintf("req %d", i))
		fail = append(fail, time.Since(start))
		if ev == nil || ans[:8] == fmt.Sprintf("%08x", victim) {
			b.Fatalf("no failover away from %08x: %q", victim, ans)
		}
		for {
			pes, err := u.Resolve(context.Background(), "echo")
			if err == nil && !slices.ContainsFunc(pes, func(p PEInfo) bool { return p.ID == victim }) {
				break
			}
			if time.Since(start) > 5*time.Second {
				b.Fatalf("dead PE %08x still resolved after 5 s", victim)
			}
			time.Sleep(2 * time.Millisecond)
		}
		removal = append(removal, time.Since(start))
		b.StopTimer()
		e := startEchoPE(b, "echo", regs)
		live[e.pe.ID()] = e
		b.StartTimer()
	}
	b.StopTimer()
	report := func(name string, d []time.Duration) {
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(d[len(d)-1].Microseconds())/1000, name+"-max-ms")
	}
	report("failover", fail)
	report("removal", removal)
}
