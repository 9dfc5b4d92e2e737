package enrp

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/transport"
	"github.com/rspxdp/rspxdp/wire"
)

// BenchmarkResolutionPaced offers handle resolutions at a fixed rate
// (open loop), which is what "p99 under 1 ms at 50,000 resolutions/s"
// means: requests keep arriving on schedule whether or not earlier ones
// were answered, so a stall shows up in every request scheduled during it
// instead of quietly slowing the offered load (coordinated omission).
// Latency is reported from each request's scheduled send time ("sched")
// and, for comparison, from when it was actually written ("sent").
//
// The load generator runs in the benchmark's process, on the same two
// cores as the registrar. It is kept cheap: requests are encoded once up
// front, answers are decoded into one reused wire.Message, and no
// per-request allocation is made. (A generator in a child process was
// tried and measured worse here: two Go runtimes with their own Ps and
// GCs on two cores contend more than one does.) Run with a count that lasts a few
// seconds at the offered rate:
//
//	go test -run '^$' -bench ResolutionPaced -benchtime 200000x -count 5 ./enrp
func BenchmarkResolutionPaced(b *testing.B) {
	for _, c := range []struct{ rate, conns int }{{50000, 8}, {50000, 32}} {
		b.Run(fmt.Sprintf("rate=%d/conns=%d", c.rate, c.conns), func(b *testing.B) {
			benchPaced(b, c.rate, c.conns)
		})
	}
}

// pacedConn is one client connection of the paced load: a sender writing
// requests at their scheduled times and a receiver matching answers to
// them in order (a registrar answers one association's requests in the
// order it received them).
type pacedConn struct {
	conn  transport.Conn
	sched []time.Duration // scheduled send time of each request, from start
	sent  []time.Duration // actual write time
	done  []time.Duration // answer time
	err   error
}

func benchPaced(b *testing.B, rate, conns int) {
	const pools = 500
	cfg := itConfig(1)
	cfg.KeepAliveInterval, cfg.KeepAliveTimeout = time.Minute, time.Minute
	n := startNode(b, cfg)
	n.srv.mu.Lock()
	for p := 0; p < pools; p++ {
		for i := 0; i < 10; i++ {
			n.srv.core.Step(0, netip.Addr{}, Registration{Handle: fmt.Sprintf("pool-%d", p), PE: testPE(uint32(p*10 + i + 1))})
		}
	}
	n.srv.core.Drain()
	n.srv.mu.Unlock()

	reqs := make([][]byte, pools)
	for p := range reqs {
		var err error
		if reqs[p], err = Encode(HandleResolution{Handle: fmt.Sprintf("pool-%d", p)}); err != nil {
			b.Fatal(err)
		}
	}
	total := max(b.N, conns)
	interval := time.Second / time.Duration(rate)
	cs := make([]*pacedConn, conns)
	for i := range cs {
		c := &pacedConn{conn: dialRPC(b, n.srv.ASAPAddr().String()).conn}
		for k := i; k < total; k += conns {
			c.sched = append(c.sched, time.Duration(k)*interval)
		}
		c.sent = make([]time.Duration, len(c.sched))
		c.done = make([]time.Duration, len(c.sched))
		cs[i] = c
	}
	// Bounded: the whole run may take at most twice its schedule plus 30 s.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Duration(total)*interval+30*time.Second)
	defer cancel()

	// The pacer's thread sleeps in a raw nanosleep, holding its P until
	// sysmon takes it back: give it one of its own so the registrar and
	// the receivers keep the machine's.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() { defer wg.Done(); c.receive(ctx, start) }()
	}
	pace(ctx, start, cs, reqs, total)
	wg.Wait()
	b.StopTimer()

	var fromSched, fromSent []time.Duration
	var last time.Duration
	for _, c := range cs {
		if c.err != nil {
			b.Fatal(c.err)
		}
		for k := range c.sched {
			fromSched = append(fromSched, c.done[k]-c.sched[k])
			fromSent = append(fromSent, c.done[k]-c.sent[k])
			last = max(last, c.done[k])
		}
		_ = c.conn.Close()
	}
	slices.Sort(fromSched)
	slices.Sort(fromSent)
	q := func(s []time.Duration, p float64) float64 {
		return float64(s[int(float64(len(s)-1)*p)].Microseconds())
	}
	b.ReportMetric(float64(len(fromSched))/last.Seconds(), "res/s")
	b.ReportMetric(q(fromSched, 0.50), "p50-µs")
	b.ReportMetric(q(fromSched, 0.90), "p90-µs")
	b.ReportMetric(q(fromSched, 0.99), "p99-µs")
	b.ReportMetric(q(fromSched, 0.999), "p99.9-µs")
	b.ReportMetric(q(fromSent, 0.99), "p99-sent-µs")
	b.ReportMetric(0, "ns/op") // wall time per op is the schedule's, not a cost
}

// pace writes request k, on connection k mod len(cs), at start+k*interval.
// Go's timers cannot do that: an idle runtime sleeps in epoll_wait with a
// whole-millisecond timeout, so a 20 µs schedule turns into a burst of
// fifty requests per millisecond, and the burst, not the registrar, sets
// the latency. The pacer therefore owns an OS thread with a 1 µs timer
// slack and sleeps with nanosleep(2) itself; it costs no more CPU than the
// writes it makes. After a late wake-up it writes everything already due.
func pace(ctx context.Context, start time.Time, cs []*pacedConn, reqs [][]byte, total int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Best effort: without it nanosleep overshoots by the default 50 µs slack.
	_, _, _ = syscall.Syscall(syscall.SYS_PRCTL, prSetTimerSlack, 1000, 0)
	conns := len(cs)
	for k := 0; k < total; k++ {
		c, i := cs[k%conns], k/conns
		if d := c.sched[i] - time.Since(start); d > 0 {
			ts := syscall.NsecToTimespec(int64(d))
			_ = syscall.Nanosleep(&ts, nil)
		}
		if c.err != nil {
			continue
		}
		c.sent[i] = time.Since(start)
		if err := c.conn.WriteMessage(ctx, reqs[k%len(reqs)]); err != nil {
			c.err = fmt.Errorf("request %d: %w", i, err)
			_ = c.conn.Close()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// prSetTimerSlack is prctl(2)'s PR_SET_TIMERSLACK.
const prSetTimerSlack = 29

// receive reads one answer per request and checks that it is a resolution
// with the pool's three PEs.
func (c *pacedConn) receive(ctx context.Context, start time.Time) {
	var dec wire.Decoder
	var w wire.Message
	for k := 0; k < len(c.sched); {
		buf, err := c.conn.ReadMessage(ctx)
		if err != nil {
			if c.err == nil {
				c.err = fmt.Errorf("answer %d: %w", k, err)
			}
			return
		}
		now := time.Since(start)
		if err := dec.Decode(wire.ASAP, buf, &w); err != nil {
			c.err = fmt.Errorf("answer %d: %w", k, err)
			return
		}
		if w.Type == wire.ASAPEndpointKeepAlive {
			continue
		}
		pes := 0
		for i := range w.Params {
			if w.Params[i].Type.Code() == wire.ParamPoolElement {
				pes++
			}
		}
		if w.Type != wire.ASAPHandleResolutionResponse || pes != 3 {
			c.err = fmt.Errorf("answer %d: %s with %d PEs, want a resolution with 3", k, w.TypeName(), pes)
			return
		}
		c.done[k] = now
		k++
	}
}
