package asap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"
)

// BenchmarkFailover measures, with registrar keep-alive 100 ms / 100 ms,
// the time from a PE's failure to the pool user's first answer from
// another PE (failover-ms) and, for a crash, to the registrar no longer
// resolving the dead PE (removal-ms). Two failures:
//
//   - crash: the PE's process is gone (listener and connections closed, no
//     deregistration), which the PU sees as a closed connection;
//   - hang: the PE keeps its connections and registration but stops
//     answering, which the PU sees only through its own answer timeout
//     (100 ms here), then calls Conn.Failover.
//
// Each iteration fails the PE the session is on and starts a replacement.
//
//	go test -run '^$' -bench Failover -benchtime 20x ./asap
func BenchmarkFailover(b *testing.B) {
	b.Run("crash", func(b *testing.B) { benchFailover(b, false) })
	b.Run("hang", func(b *testing.B) { benchFailover(b, true) })
}

const hangTimeout = 100 * time.Millisecond

func benchFailover(b *testing.B, hang bool) {
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
		line := fmt.Sprintf("req %d", i)
		start := time.Now()
		if hang {
			live[victim].frozen.Store(true)
			if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
				b.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(hangTimeout))
			_, err := r.ReadString('\n')
			_ = c.SetReadDeadline(time.Time{})
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				b.Fatalf("hung PE answered: %v", err)
			}
			var fe *FailoverError
			if err := c.Failover(err); !errors.As(err, &fe) {
				b.Fatalf("failover: %v", err)
			}
			r.Reset(c)
		} else {
			live[victim].pe.abort()
		}
		delete(live, victim)
		ans, _ := echoRound(b, c, r, line)
		fail = append(fail, time.Since(start))
		if ans[:8] == fmt.Sprintf("%08x", victim) {
			b.Fatalf("answer from the failed PE %08x: %q", victim, ans)
		}
		if !hang {
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
		}
		b.StopTimer()
		e := startEchoPE(b, "echo", regs)
		live[e.pe.ID()] = e
		b.StartTimer()
	}
	b.StopTimer()
	report := func(name string, d []time.Duration) {
		if len(d) == 0 {
			return
		}
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(d[len(d)-1].Microseconds())/1000, name+"-max-ms")
	}
	report("failover", fail)
	report("removal", removal)
}
