package soak

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/asap"
	"github.com/rspxdp/rspxdp/enrp"
	"github.com/rspxdp/rspxdp/transport"
)

// Timers as in the enrp and asap integration tests: keep-alives every
// 100 ms, a peer dead after 250 ms unheard plus 150 ms without answer.
const (
	keepAlive     = 100 * time.Millisecond
	heartbeat     = 100 * time.Millisecond
	lastHeard     = 250 * time.Millisecond
	noResponse    = 150 * time.Millisecond
	takeoverAfter = 300 * time.Millisecond
)

// Soak shape. The bounds are generous on purpose: the test must hold on
// a loaded two-core machine, so it asserts outcomes after long settle
// windows, never how fast something happened.
const (
	defaultSoak = 30 * time.Second
	pools       = 2
	minPerPool  = 3  // churn never takes a pool below this
	maxPEs      = 16 // across both pools
	poolUsers   = 3
	// downtime is how long a killed registrar stays down: past its peers'
	// failure detection, so abrupt kills end in real takeovers.
	downtime = 1500 * time.Millisecond
	// excuse is how long after a registrar comes back a failed resolution
	// or registration is still blamed on the kill: the client's response
	// timeout to the dead registrar, its move to the next one, and the
	// restarted registrar's mentor sync all fit in it several times. An
	// operation that started up to one response timeout before the kill
	// is excused too: it may have been waiting on the registrar that died.
	excuse      = 3 * time.Second
	respTimeout = time.Second
	// maxKillEvery keeps long soaks killing registrars all along.
	maxKillEvery = 10 * time.Second
	// settle bounds the wait for convergence after the load stops.
	settle = 30 * time.Second
	// leakWait bounds the wait for goroutines to wind down at the end.
	leakWait = 20 * time.Second
	// goroutineSlack and heapSlack are the leak tolerances: a few runtime
	// goroutines (GC workers, the net poller) may start during the test
	// and stay; the heap may keep allocator slack and sync.Pool spares.
	goroutineSlack = 3
	heapSlack      = 4 << 20
	// pacing between one client's operations keeps the load bounded.
	resolvePace = 5 * time.Millisecond
	churnPace   = 150 * time.Millisecond
)

func soakDuration(t *testing.T) time.Duration {
	s := os.Getenv("RSPXDP_SOAK")
	if s == "" {
		return defaultSoak
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 10*time.Second {
		t.Fatalf("RSPXDP_SOAK=%q: want a duration of at least 10s", s)
	}
	return d
}

// logSink keeps the registrars' and PEs' warnings for a failing test.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 4<<20 { // bounded: keep the first 4 MiB
		return len(p), nil
	}
	return l.buf.Write(p)
}

func (l *logSink) logger(who string) *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelWarn})).With("who", who)
}

// registrar is one slot of the pool: a fixed identity and addresses,
// served by successive incarnations.
type registrar struct {
	id         uint32
	asap, enrp string // bound by the first incarnation, reused by the rest
	peers      []string

	mu     sync.Mutex
	srv    *enrp.Server
	cancel context.CancelFunc
	done   chan error
	// counters of the incarnations that ended.
	past enrp.Counters
}

func (r *registrar) start(log *slog.Logger, abrupt bool) error {
	cfg := enrp.ServerConfig{
		Config: enrp.Config{
			ID:                    r.id,
			KeepAliveInterval:     keepAlive,
			KeepAliveTimeout:      keepAlive,
			PeerHeartbeatCycle:    heartbeat,
			PeerMaxTimeLastHeard:  lastHeard,
			PeerMaxTimeNoResponse: noResponse,
			TakeoverExpiry:        takeoverAfter,
			DrainTimeout:          -1,
			Logger:                log,
		},
		Transport:  "tcp",
		ASAPListen: r.asap,
		ENRPListen: r.enrp,
		Peers:      r.peers,
	}
	if abrupt {
		cfg.LeaveTimeout = -1 // stop without telling the peers: their timers find out
	}
	var srv *enrp.Server
	var err error
	// The ports were ours a moment ago; retry briefly in case the kernel
	// has not let go of them yet.
	for try := 0; try < 50; try++ {
		if srv, err = enrp.NewServer(context.Background(), cfg); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("start registrar %d: %w", r.id, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	r.mu.Lock()
	r.srv, r.cancel, r.done = srv, cancel, done
	if r.asap == "" {
		r.asap, r.enrp = srv.ASAPAddr().String(), srv.ENRPAddr().String()
	}
	r.mu.Unlock()
	return nil
}

func (r *registrar) stop() error {
	r.mu.Lock()
	srv, cancel, done := r.srv, r.cancel, r.done
	r.srv = nil
	r.mu.Unlock()
	if srv == nil {
		return nil
	}
	c := srv.Counters()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("registrar %d: %w", r.id, err)
		}
	case <-time.After(10 * time.Second):
		return fmt.Errorf("registrar %d did not stop within 10s", r.id)
	}
	r.mu.Lock()
	addCounters(&r.past, c)
	r.mu.Unlock()
	return nil
}

func (r *registrar) server() *enrp.Server {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.srv
}

func addCounters(dst *enrp.Counters, c enrp.Counters) {
	dst.Registrations += c.Registrations
	dst.Reregistrations += c.Reregistrations
	dst.Deregistrations += c.Deregistrations
	dst.KeepAliveFailures += c.KeepAliveFailures
	dst.Resolutions += c.Resolutions
	dst.ResolutionsFailed += c.ResolutionsFailed
	dst.Takeovers += c.Takeovers
	dst.TakeoverAdoptedPEs += c.TakeoverAdoptedPEs
}

// outages records when registrars were down, to tell excused client
// failures from real ones.
type outages struct {
	mu      sync.Mutex
	windows [][2]time.Time // [kill-respTimeout, restart+excuse]; an open one ends at the zero time
}

func (o *outages) begin(at time.Time) {
	o.mu.Lock()
	o.windows = append(o.windows, [2]time.Time{at, {}})
	o.mu.Unlock()
}

func (o *outages) end(restarted time.Time) {
	o.mu.Lock()
	o.windows[len(o.windows)-1][1] = restarted.Add(excuse)
	o.mu.Unlock()
}

// excused reports whether an operation started at start overlaps an
// outage window.
func (o *outages) excused(start time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, w := range o.windows {
		if !start.Before(w[0].Add(-respTimeout)) && (w[1].IsZero() || start.Before(w[1])) {
			return true
		}
	}
	return false
}

// livePE is a PE the test believes registered and alive.
type livePE struct {
	pe     *asap.PoolElement
	handle string
	sw     *crashSwitch
}

type counts struct {
	registered, registerFailed, registerExcused atomic.Int64
	crashed, deregistered, deregisterFailed     atomic.Int64
	resolved, resolveFailed, resolveExcused     atomic.Int64
	unknownPE                                   atomic.Int64
	registrarKills, abruptKills                 atomic.Int64
}

func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test: skipped with -short")
	}
	run := soakDuration(t)
	logs := &logSink{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("warnings logged (registrars, PEs, PUs):\n%s", logs.buf.String())
		}
	})

	g0, h0 := settledBaseline()
	t.Logf("baseline: %d goroutines, heap in use %.1f MiB", g0, mib(h0))

	// Three registrars: each peers with those started before it; a
	// restarted one knows both others.
	regs := make([]*registrar, 3)
	for i := range regs {
		regs[i] = &registrar{id: uint32(i + 1), asap: "127.0.0.1:0", enrp: "127.0.0.1:0"}
		for _, o := range regs[:i] {
			regs[i].peers = append(regs[i].peers, o.enrp)
		}
		// Kill k hits regs[k%3] and is abrupt for even k: the first kill of
		// regs[i] is kill i.
		if err := regs[i].start(logs.logger(fmt.Sprintf("registrar-%d", i+1)), i%2 == 0); err != nil {
			t.Fatal(err)
		}
		regs[i].asap, regs[i].enrp = regs[i].server().ASAPAddr().String(), regs[i].server().ENRPAddr().String()
	}
	var asapAddrs []string
	for i, r := range regs {
		asapAddrs = append(asapAddrs, r.asap)
		r.peers = nil
		for j, o := range regs {
			if j != i {
				r.peers = append(r.peers, o.enrp)
			}
		}
	}
	stopped := false
	stopRegistrars := func() {
		if stopped {
			return
		}
		stopped = true
		for _, r := range regs {
			if err := r.stop(); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(stopRegistrars)
	waitUntil(t, 10*time.Second, "registrars peered", func() bool {
		for _, r := range regs {
			if len(r.server().Peers()) != 2 {
				return false
			}
		}
		return true
	})

	var (
		c      counts
		out    outages
		mu     sync.Mutex // guards live, ever, nextID
		live   = map[uint32]*livePE{}
		ever   = map[uint32]bool{}
		nextID = uint32(0x50000000)
		bg     sync.WaitGroup // PE closes that run in the background
	)
	handles := make([]string, pools)
	for i := range handles {
		handles[i] = fmt.Sprintf("soak-%d", i)
	}
	poolSize := func(h string) int {
		n := 0
		for _, p := range live {
			if p.handle == h {
				n++
			}
		}
		return n
	}
	register := func(ctx context.Context, handle string) error {
		inner, err := transport.NewTCP(transport.Config{Protocol: transport.ASAP, Logger: logs.logger("pe-transport")})
		if err != nil {
			return err
		}
		sw := newCrashSwitch(inner)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		mu.Lock()
		nextID++
		id := nextID
		ever[id] = true // before it can appear in a resolution
		mu.Unlock()
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		pe, err := asap.Register(rctx, handle, ln,
			asap.WithRegistrars(rotated(asapAddrs, int(id))...), asap.WithTransport(sw), asap.WithPEID(id),
			asap.WithReregistrationInterval(2*time.Second), asap.WithResponseTimeout(respTimeout),
			asap.WithDialTimeout(time.Second), asap.WithLogger(logs.logger(fmt.Sprintf("pe-%08x", id))))
		cancel()
		if err != nil {
			ln.Close()
			if out.excused(start) || ctx.Err() != nil {
				c.registerExcused.Add(1)
				return nil
			}
			c.registerFailed.Add(1)
			return fmt.Errorf("register PE %08x in %s: %w", id, handle, err)
		}
		c.registered.Add(1)
		mu.Lock()
		live[id] = &livePE{pe: pe, handle: handle, sw: sw}
		mu.Unlock()
		return nil
	}

	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	for i := 0; i < pools*minPerPool+2; i++ {
		if err := register(ctx, handles[i%pools]); err != nil {
			t.Fatal(err)
		}
	}

	var load sync.WaitGroup
	// Pool users: resolve continuously, every time from a registrar.
	for u := 0; u < poolUsers; u++ {
		pu, err := asap.NewPoolUser(asap.WithRegistrars(rotated(asapAddrs, u)...), asap.WithCacheStaleness(0),
			asap.WithResponseTimeout(respTimeout), asap.WithDialTimeout(time.Second),
			asap.WithLogger(logs.logger(fmt.Sprintf("pu-%d", u))))
		if err != nil {
			t.Fatal(err)
		}
		load.Add(1)
		go func() {
			defer load.Done()
			defer pu.Close()
			for n := 0; ctx.Err() == nil; n++ {
				h := handles[(n+u)%pools]
				start := time.Now()
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				pes, err := pu.Resolve(rctx, h)
				cancel()
				switch {
				case ctx.Err() != nil:
				case err != nil || len(pes) == 0:
					if out.excused(start) {
						c.resolveExcused.Add(1)
					} else {
						c.resolveFailed.Add(1)
						t.Logf("resolution of %s at %s failed outside any outage: %v", h, start.Format("15:04:05.000"), err)
					}
				default:
					c.resolved.Add(1)
					mu.Lock()
					for _, p := range pes {
						if !ever[p.ID] {
							c.unknownPE.Add(1)
							t.Errorf("resolution of %s named PE %s, never registered", h, p)
						}
					}
					mu.Unlock()
				}
				select {
				case <-ctx.Done():
				case <-time.After(resolvePace):
				}
			}
		}()
	}

	// PE churn: new PEs, crashes and clean deregistrations.
	seed := uint64(time.Now().UnixNano())
	t.Logf("churn seed %d", seed)
	rng := rand.New(rand.NewPCG(1, seed))
	load.Add(1)
	go func() {
		defer load.Done()
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(churnPace):
			}
			h := handles[rng.IntN(pools)]
			mu.Lock()
			n, total := poolSize(h), len(live)
			var victim *livePE
			var victimID uint32
			for id, p := range live { // map order: a random member
				if p.handle == h {
					victim, victimID = p, id
					break
				}
			}
			action := rng.IntN(3)
			if action > 0 && n > minPerPool {
				delete(live, victimID)
			} else {
				action = 0
			}
			mu.Unlock()
			switch {
			case action == 0 && total < maxPEs:
				if err := register(ctx, h); err != nil {
					t.Error(err)
				}
			case action == 1:
				// Crash: silent from now on; Close later frees what the
				// crashed process would have taken with it.
				victim.sw.crash()
				c.crashed.Add(1)
				bg.Add(1)
				go func() {
					defer bg.Done()
					victim.pe.Close()
				}()
			case action == 2:
				start := time.Now()
				if err := victim.pe.Close(); err != nil {
					c.deregisterFailed.Add(1)
					if !out.excused(start) {
						t.Logf("deregistration of %08x outside any outage unconfirmed: %v", victimID, err)
					}
				} else {
					c.deregistered.Add(1)
				}
			}
		}
	}()

	// Registrar kills, one at a time, round robin, alternating abrupt
	// stops and graceful leaves; spaced so that every registrar is
	// restarted once and, at the default length, much of the run lies
	// outside the outage windows, where no failure is excused.
	killEvery := min((run-3*downtime)/4, maxKillEvery)
	load.Add(1)
	go func() {
		defer load.Done()
		for k := 0; ; k++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(killEvery):
			}
			r := regs[k%len(regs)]
			abrupt := k%2 == 0
			// A registrar's leave mode is part of its configuration, so the
			// incarnation to be killed abruptly is the one started so.
			out.begin(time.Now())
			if err := r.stop(); err != nil {
				t.Error(err)
			}
			c.registrarKills.Add(1)
			if abrupt {
				c.abruptKills.Add(1)
			}
			time.Sleep(downtime)
			err := r.start(logs.logger(fmt.Sprintf("registrar-%d", r.id)), (k+len(regs))%2 == 0)
			out.end(time.Now())
			if err != nil {
				t.Error(err)
				return
			}
		}
	}()

	time.Sleep(run)
	stopLoad()
	load.Wait()
	loadEnd := time.Now()

	// Settle: every live PE everywhere, nothing else anywhere, checksums
	// equal.
	mu.Lock()
	want := map[string][]uint32{}
	for id, p := range live {
		want[p.handle] = append(want[p.handle], id)
	}
	mu.Unlock()
	for h := range want {
		slices.Sort(want[h])
	}
	var lastDiff string
	ok := poll(settle, func() bool {
		lastDiff = handlespaceDiff(regs, want)
		return lastDiff == ""
	})
	settled := time.Since(loadEnd)
	if !ok {
		t.Errorf("handlespaces did not converge within %s of the load's end: %s", settle, lastDiff)
	}

	var total enrp.Counters
	for _, r := range regs {
		if s := r.server(); s != nil {
			addCounters(&total, s.Counters())
		}
		addCounters(&total, r.past)
	}
	mu.Lock()
	nLive := len(live)
	mu.Unlock()

	// Shut down in the order a deployment would: users, PEs, registrars.
	mu.Lock()
	for id, p := range live {
		if err := p.pe.Close(); err != nil {
			t.Logf("final close of %08x: %v", id, err)
		}
	}
	live = map[uint32]*livePE{}
	mu.Unlock()
	bg.Wait()
	stopRegistrars()

	var g1 int
	goroutinesOK := poll(leakWait, func() bool {
		g1 = runtime.NumGoroutine()
		return g1 <= g0+goroutineSlack
	})
	_, h1 := settledBaseline()

	attempts := c.resolved.Load() + c.resolveFailed.Load() + c.resolveExcused.Load()
	ratio := float64(c.resolved.Load()) / float64(max(attempts, 1))
	t.Logf("soak %s: registrar kills %d (%d abrupt, %d graceful); PEs registered %d (+%d excused failures), crashed %d, deregistered %d (%d unconfirmed); %d PEs live at the end",
		run, c.registrarKills.Load(), c.abruptKills.Load(), c.registrarKills.Load()-c.abruptKills.Load(),
		c.registered.Load(), c.registerExcused.Load(), c.crashed.Load(), c.deregistered.Load(), c.deregisterFailed.Load(), nLive)
	t.Logf("resolutions: %d ok, %d failed inside outage windows, %d failed outside; success ratio %.4f",
		c.resolved.Load(), c.resolveExcused.Load(), c.resolveFailed.Load(), ratio)
	t.Logf("registrars (all incarnations): registrations %d, re-registrations %d, deregistrations %d, keep-alive removals %d, resolutions %d (%d empty), takeovers %d adopting %d PEs",
		total.Registrations, total.Reregistrations, total.Deregistrations, total.KeepAliveFailures,
		total.Resolutions, total.ResolutionsFailed, total.Takeovers, total.TakeoverAdoptedPEs)
	t.Logf("converged %s after the load stopped; goroutines %d before, %d after; heap in use %.1f MiB before, %.1f MiB after",
		settled.Round(time.Millisecond), g0, g1, mib(h0), mib(h1))

	if c.registrarKills.Load() < int64(len(regs)) {
		t.Errorf("only %d registrar kills in %s: every registrar should have been restarted once", c.registrarKills.Load(), run)
	}
	if c.crashed.Load() == 0 || c.deregistered.Load() == 0 || c.registered.Load() <= int64(pools*minPerPool+2) {
		t.Errorf("churn did not exercise every path: %d crashed, %d deregistered, %d registered",
			c.crashed.Load(), c.deregistered.Load(), c.registered.Load())
	}
	if total.KeepAliveFailures == 0 {
		t.Error("no PE was ever removed for a missed keep-alive, though PEs crashed")
	}
	if total.Takeovers == 0 {
		t.Error("no takeover happened, though registrars were killed")
	}
	// The bound on failures: none outside the outage windows, and the
	// windows cannot have eaten much of the run.
	if n := c.resolveFailed.Load(); n > 0 {
		t.Errorf("%d resolutions failed outside the outage windows", n)
	}
	if n := c.registerFailed.Load(); n > 0 {
		t.Errorf("%d registrations failed outside the outage windows", n)
	}
	if ratio < 0.9 {
		t.Errorf("resolution success ratio %.4f, want at least 0.9", ratio)
	}
	if !goroutinesOK {
		var stacks bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		t.Errorf("goroutines: %d after shutdown, baseline %d (+%d allowed) after %s:\n%s", g1, g0, goroutineSlack, leakWait, stacks.String())
	}
	if h1 > h0+heapSlack {
		t.Errorf("heap in use %.1f MiB after shutdown, baseline %.1f MiB (+%.0f MiB allowed)", mib(h1), mib(h0), mib(heapSlack))
	}
}

// handlespaceDiff says how the registrars' handlespaces differ from want
// and from each other, or "" when all hold exactly want with equal
// checksums for every owner.
func handlespaceDiff(regs []*registrar, want map[string][]uint32) string {
	var diffs []string
	var srvs []*enrp.Server
	for _, r := range regs {
		s := r.server()
		if s == nil {
			return fmt.Sprintf("registrar %d is down", r.id)
		}
		srvs = append(srvs, s)
		got := map[string][]uint32{}
		for _, p := range s.Snapshot() {
			for _, pe := range p.PEs {
				got[p.Handle] = append(got[p.Handle], pe.ID)
			}
		}
		for h := range want {
			if !slices.Equal(got[h], want[h]) {
				diffs = append(diffs, fmt.Sprintf("registrar %d pool %s: %08x, want %08x", r.id, h, got[h], want[h]))
			}
		}
		for h := range got {
			if _, ok := want[h]; !ok {
				diffs = append(diffs, fmt.Sprintf("registrar %d has stray pool %s: %08x", r.id, h, got[h]))
			}
		}
	}
	for _, owner := range regs {
		for _, s := range srvs[1:] {
			if a, b := srvs[0].Checksum(owner.id), s.Checksum(owner.id); a != b {
				diffs = append(diffs, fmt.Sprintf("checksum over owner %d: %04x at registrar %d, %04x at registrar %d", owner.id, a, srvs[0].ID(), b, s.ID()))
			}
		}
	}
	return strings.Join(diffs, "; ")
}

// rotated returns addrs starting at the k-th (mod len): clients try their
// registrars in order, so rotating the lists spreads the PEs' homes and the
// users' queries over all three registrars.
func rotated(addrs []string, k int) []string {
	k %= len(addrs)
	return append(slices.Clone(addrs[k:]), addrs[:k]...)
}

// settledBaseline returns the goroutine count and the heap in use after
// garbage collection.
func settledBaseline() (int, uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m.HeapInuse
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// poll calls cond every 50 ms until it holds or within has passed.
func poll(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(within, cond) {
		t.Fatalf("%s: not within %s", what, within)
	}
}
