package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/transport"
	"github.com/rspxdp/rspxdp/wire"
)

// benchConfig is what `rspxdp pu bench` was asked to do.
type benchConfig struct {
	pool        string
	registrar   string
	connections int
	outstanding int
	count       int           // 0: until duration
	duration    time.Duration // 0: until count
	pes         int           // 0: any non-empty answer
	asJSON      bool
}

// benchResult is what one bench run measured; --json prints it as is.
type benchResult struct {
	Pool        string  `json:"pool"`
	Registrar   string  `json:"registrar"`
	Transport   string  `json:"transport"`
	Connections int     `json:"connections"`
	Outstanding int     `json:"outstanding"`
	Resolutions int64   `json:"resolutions"`
	Errors      int64   `json:"errors"`
	Seconds     float64 `json:"seconds"`
	Rate        float64 `json:"rate"`
	P50Micros   float64 `json:"p50_us"`
	P99Micros   float64 `json:"p99_us"`
	MaxMicros   float64 `json:"max_us"`
	// LatencySamples is how many answers the latency figures are from
	// (one in latencyEvery).
	LatencySamples int      `json:"latency_samples"`
	PEs            []string `json:"pes"`
	// ClientCPUSeconds is this process's own user+system CPU time over
	// the run, so a reader can tell the client's share of a shared CPU.
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
	FirstError       string  `json:"first_error,omitempty"`
}

// benchConn is one association's part of a run.
type benchConn struct {
	n     int64           // answers checked and good
	lat   []time.Duration // latency of every latencyEvery'th answer
	errs  int64
	first error
}

// puBench opens cfg.connections associations to one registrar and keeps
// cfg.outstanding Handle Resolutions in flight on each, as fast as the
// answers come, until cfg.count answers or cfg.duration. ASAP has no
// request identifier and a registrar answers one association's requests in
// order, so answers are matched to requests first-in first-out. Every
// answer must name the pool's PEs (with --pes, exactly that many distinct
// ones, the same set every time); anything else counts as an error.
func puBench(ctx context.Context, env *cliEnv, tr transport.Transport, cfg benchConfig) error {
	req, err := msg.Encode(msg.HandleResolution{Handle: cfg.pool, MaxItems: uint32(cfg.pes)})
	if err != nil {
		return err
	}
	conns := make([]transport.Conn, 0, cfg.connections)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < cfg.connections; i++ {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := tr.Dial(dctx, cfg.registrar)
		cancel()
		if err != nil {
			return fmt.Errorf("registrar %s unreachable: %w", cfg.registrar, err)
		}
		conns = append(conns, c)
	}
	var ref pesRef
	runCtx, stop := context.WithCancel(ctx)
	if cfg.duration > 0 {
		runCtx, stop = context.WithTimeout(ctx, cfg.duration)
	}
	defer stop()
	var budget atomic.Int64 // requests left to send when --count is given
	budget.Store(int64(cfg.count))
	results := make([]benchConn, len(conns))
	var wg sync.WaitGroup
	cpu0, start := cpuSeconds(), time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = benchOne(runCtx, c, req, cfg, &budget, &ref)
		}()
	}
	wg.Wait()
	el, cpu := time.Since(start), cpuSeconds()-cpu0
	if ctx.Err() != nil {
		return ctx.Err()
	}
	res := benchResult{Pool: cfg.pool, Registrar: cfg.registrar, Transport: tr.Name(), Connections: cfg.connections,
		Outstanding: cfg.outstanding, Seconds: el.Seconds(), ClientCPUSeconds: cpu, PEs: ref.names()}
	var lat []time.Duration
	for _, r := range results {
		res.Resolutions += r.n
		lat = append(lat, r.lat...)
		res.Errors += r.errs
		if r.first != nil && res.FirstError == "" {
			res.FirstError = r.first.Error()
		}
	}
	if el > 0 {
		res.Rate = float64(res.Resolutions) / el.Seconds()
	}
	res.LatencySamples = len(lat)
	if len(lat) > 0 {
		slices.Sort(lat)
		us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
		res.P50Micros, res.P99Micros, res.MaxMicros = us(lat[(len(lat)-1)/2]), us(lat[(len(lat)-1)*99/100]), us(lat[len(lat)-1])
	}
	if cfg.asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		printBench(env.stdout, res)
	}
	switch {
	case res.Resolutions == 0:
		return fmt.Errorf("no answer from %s in %v (%d errors; first: %s)", cfg.registrar, el.Round(time.Millisecond), res.Errors, res.FirstError)
	case res.Errors > 0:
		return fmt.Errorf("%d errors; first: %s", res.Errors, res.FirstError)
	}
	return nil
}

func printBench(w io.Writer, r benchResult) {
	fmt.Fprintf(w, "pool %q via %s (%s): %d association(s) x %d outstanding\n", r.Pool, r.Registrar, r.Transport, r.Connections, r.Outstanding)
	fmt.Fprintf(w, "resolutions: %d in %.2fs = %.1f/s\n", r.Resolutions, r.Seconds, r.Rate)
	fmt.Fprintf(w, "latency (%d answers, one in %d): p50 %.0fµs, p99 %.0fµs, max %.0fµs\n", r.LatencySamples, latencyEvery, r.P50Micros, r.P99Micros, r.MaxMicros)
	fmt.Fprintf(w, "errors: %d\n", r.Errors)
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
	fmt.Fprintf(w, "PEs in every answer: %v\n", r.PEs)
	fmt.Fprintf(w, "client CPU: %.2fs (%.1f µs per resolution)\n", r.ClientCPUSeconds, perResolution(r.ClientCPUSeconds, r.Resolutions))
}

func perResolution(cpu float64, n int64) float64 {
	if n == 0 {
		return 0
	}
	return cpu * 1e6 / float64(n)
}

// benchOne runs one association from one goroutine: it sends
// cfg.outstanding requests, tops the window up again whenever half of it
// is answered, until the run ends, and then reads the answers still in
// flight. No goroutine hand-off
// per request: the client must cost as little CPU as it can, since in the
// test VM it shares the CPUs with the registrar it measures.
func benchOne(ctx context.Context, c transport.Conn, req []byte, cfg benchConfig, budget *atomic.Int64, ref *pesRef) benchConn {
	var out benchConn
	fail := func(err error) {
		out.errs++
		if out.first == nil {
			out.first = err
		}
	}
	// I/O is not bounded by the run, only by a stall watchdog: a write cut
	// at the run's end would close a TCP connection and lose the answers
	// in flight, and a context per read would cost a timer per answer.
	ioctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var last atomic.Int64 // unix nanoseconds of the last answer
	last.Store(time.Now().UnixNano())
	stalled := make(chan struct{})
	go func() {
		t := time.NewTicker(answerTimeout / 5)
		defer t.Stop()
		for {
			select {
			case <-ioctx.Done():
				return
			case <-t.C:
				if time.Since(time.Unix(0, last.Load())) > answerTimeout {
					close(stalled)
					cancel()
					return
				}
			}
		}
	}()
	more := func() bool {
		if ctx.Err() != nil {
			return false
		}
		return cfg.count == 0 || budget.Add(-1) >= 0
	}
	inflight := make([]time.Time, 0, cfg.outstanding) // send times, oldest first
	bw, _ := c.(transport.BatchWriter)
	batch := make([][]byte, 0, cfg.outstanding)
	// refill sends requests until cfg.outstanding are in flight, together
	// in one write where the transport can (SCTP: in as few packets as fit),
	// as a client with that many requests to make would.
	refill := func() error {
		batch = batch[:0]
		for len(inflight)+len(batch) < cfg.outstanding && more() {
			batch = append(batch, req)
		}
		if len(batch) == 0 {
			return nil
		}
		now := time.Now()
		var err error
		if len(batch) > 1 && bw != nil {
			err = bw.WriteMessages(ioctx, batch)
		} else {
			for _, b := range batch {
				if err = c.WriteMessage(ioctx, b); err != nil {
					break
				}
			}
		}
		if err != nil {
			return fmt.Errorf("send request: %w", err)
		}
		for range batch {
			inflight = append(inflight, now)
		}
		last.Store(now.UnixNano())
		return nil
	}
	if err := refill(); err != nil {
		fail(err)
		return out
	}
	var dec wire.Decoder
	var w wire.Message
	// Answers already checked, byte for byte: a registrar repeats the
	// same few (RoundRobin rotates one order), and one equal to a checked
	// one needs no decoding. The client's CPU bounds the rate it can
	// measure (it shares the guest with the registrar), so this keeps
	// every answer checked at a fraction of the cost.
	var checked [][]byte
	answered := 0
	for len(inflight) > 0 {
		b, err := c.ReadMessage(ioctx)
		if err != nil {
			select {
			case <-stalled:
				err = fmt.Errorf("no answer for %v (%d in flight)", answerTimeout, len(inflight))
			default:
			}
			fail(fmt.Errorf("read answer: %w", err))
			return out
		}
		// The clock is read for every latencyEvery'th answer only: in
		// the test VM a clock read is a system call (the guest's clock
		// source is the HPET), and one per answer was a good part of
		// the client's cost.
		sample := answered%latencyEvery == 0
		answered++
		var d time.Duration
		if sample {
			now := time.Now()
			last.Store(now.UnixNano())
			d = now.Sub(inflight[0])
		}
		inflight = append(inflight[:0], inflight[1:]...)
		good := knownAnswer(checked, b)
		if !good {
			if err := checkAnswer(&dec, &w, b, cfg, ref); err != nil {
				fail(err)
			} else if good = true; len(checked) < maxCheckedAnswers {
				checked = append(checked, slices.Clone(b))
			}
		}
		if good {
			out.n++
			if sample {
				out.lat = append(out.lat, d)
			}
		}
		// Refilled once half the window is answered, so requests leave in
		// groups rather than one per answer.
		if len(inflight) <= cfg.outstanding/2 {
			if err := refill(); err != nil {
				fail(err)
				return out
			}
		}
	}
	return out
}

// latencyEvery: one answer in latencyEvery has its latency measured.
const latencyEvery = 4

// maxCheckedAnswers bounds the checked answers benchOne remembers.
const maxCheckedAnswers = 16

// knownAnswer reports whether b is byte for byte one of the answers
// already checked.
func knownAnswer(checked [][]byte, b []byte) bool {
	for _, c := range checked {
		if bytes.Equal(c, b) {
			return true
		}
	}
	return false
}

// answerTimeout bounds the wait for one answer.
const answerTimeout = 5 * time.Second

// checkAnswer decodes one answer and checks it names the pool's PEs.
func checkAnswer(dec *wire.Decoder, w *wire.Message, b []byte, cfg benchConfig, ref *pesRef) error {
	if err := dec.Decode(wire.ASAP, b, w); err != nil {
		return fmt.Errorf("undecodable answer: %w", err)
	}
	m, err := msg.FromWire(w)
	if err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	r, ok := m.(msg.HandleResolutionResponse)
	switch {
	case !ok:
		return fmt.Errorf("answer is a %T, not a Handle Resolution Response", m)
	case r.Cause != 0:
		return fmt.Errorf("handle resolution refused: %v", r.Cause)
	case len(r.PEs) == 0:
		return errors.New("handle resolution answered with no PE")
	case cfg.pes > 0 && len(r.PEs) != cfg.pes:
		return fmt.Errorf("answer names %d PEs, want %d", len(r.PEs), cfg.pes)
	}
	ids := make([]uint32, len(r.PEs))
	for i, pe := range r.PEs {
		ids[i] = pe.ID
	}
	slices.Sort(ids)
	if cfg.pes > 0 && len(slices.Compact(slices.Clone(ids))) != len(ids) {
		return fmt.Errorf("answer names a PE twice: %v", idList(ids))
	}
	return ref.check(ids, cfg.pes > 0)
}

// pesRef is the set of PEs the first answer named; with --pes every later
// answer must name the same set.
type pesRef struct {
	mu  sync.Mutex
	ids []uint32
}

func (p *pesRef) check(ids []uint32, same bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ids == nil {
		p.ids = ids
		return nil
	}
	if same && !slices.Equal(p.ids, ids) {
		return fmt.Errorf("answer names PEs %v, the first named %v", idList(ids), idList(p.ids))
	}
	return nil
}

func (p *pesRef) names() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return idList(p.ids)
}

func idList(ids []uint32) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprintf("0x%08x", id)
	}
	return out
}

// cpuSeconds returns this process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// benchTransport is the plain ASAP transport a bench runs over: RFC 5352
// over SCTP (what rsplib's rspregistrar speaks) or rspxdp's TCP framing.
func benchTransport(kind string, env *cliEnv) (transport.Transport, error) {
	t, err := transport.New(kind, transport.Config{Protocol: transport.ASAP, Logger: env.logger()})
	if err != nil {
		return nil, fmt.Errorf("--transport %s: %w", kind, err)
	}
	return t, nil
}

// runBench checks the bench flags and runs it.
func runBench(ctx context.Context, env *cliEnv, fs *flag.FlagSet, cfg benchConfig, kind string, tf *tlsFlags) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["count"] {
		cfg.count = 0 // --count's default is echo's
	}
	if set["count"] && !set["duration"] {
		cfg.duration = 0 // --count alone: run until that many answers
	}
	switch {
	case cfg.registrar == "":
		return usagef("bench needs --registrar")
	case cfg.connections == 0:
		return usagef("--connections must be positive")
	case cfg.outstanding == 0:
		return usagef("--outstanding must be positive")
	case cfg.count == 0 && cfg.duration == 0:
		return usagef("bench needs a bound: --duration or --count")
	case *tf.ca != "" || *tf.cert != "" || *tf.key != "":
		return usagef("bench speaks plain ASAP: drop the TLS flags")
	case kind != "tcp" && kind != "sctp" && kind != "auto":
		return usagef("--transport %q: want tcp, sctp or auto", kind)
	}
	tr, err := benchTransport(kind, env)
	if err != nil {
		return err
	}
	return puBench(ctx, env, tr, cfg)
}

// firstOf returns the first element of l, or "".
func firstOf(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return l[0]
}
