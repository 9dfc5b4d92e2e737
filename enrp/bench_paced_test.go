package enrp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
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
// cores as the registrar. It is kept cheap so that it disturbs the
// registrar as little as a separate process would: requests are encoded
// once up front, answers are decoded into one reused wire.Message, and no
// per-request allocation is made. Run with a count that lasts a few
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

	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(2)
		go func() { defer wg.Done(); c.send(ctx, start, reqs, i, conns) }()
		go func() { defer wg.Done(); c.receive(ctx, start) }()
	}
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

// send writes request k at start+sched[k]. It sleeps when ahead and,
// after a late wake-up, writes everything already due at once.
func (c *pacedConn) send(ctx context.Context, start time.Time, reqs [][]byte, first, stride int) {
	for k, at := range c.sched {
		if d := at - time.Since(start); d > 0 {
			time.Sleep(d)
		}
		c.sent[k] = time.Since(start)
		if err := c.conn.WriteMessage(ctx, reqs[(first+k*stride)%len(reqs)]); err != nil {
			c.err = fmt.Errorf("request %d: %w", k, err)
			_ = c.conn.Close()
			return
		}
	}
}

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
