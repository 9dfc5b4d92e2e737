package asap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/enrp"
	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/selector/policy"
	"github.com/rspxdp/rspxdp/transport"
	"github.com/rspxdp/rspxdp/wire"
)

// Integration tests: real registrars (package enrp) over TCP (or what
// RSPXDP_TEST_TRANSPORT names) on 127.0.0.1 with keep-alive 100 ms / 100 ms
// (stretched by RSPXDP_TIME_SCALE), real PEs and PUs of this package.

var itKA = testenv.Scaled(100 * time.Millisecond)

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
}

type registrar struct {
	srv    *enrp.Server
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func (r *registrar) addr() string { return r.srv.ASAPAddr().String() }

func (r *registrar) stop() {
	r.once.Do(func() {
		r.cancel()
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			panic("registrar did not stop")
		}
	})
}

// startRegistrars starts k peered registrars.
func startRegistrars(t testing.TB, k int) []*registrar {
	t.Helper()
	return startTunedRegistrars(t, k, nil)
}

// startTunedRegistrars starts k peered registrars, letting tune change
// each one's configuration first.
func startTunedRegistrars(t testing.TB, k int, tune func(*enrp.ServerConfig)) []*registrar {
	t.Helper()
	// The registrars' logs are shown when the test fails.
	logs := &logBuf{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("registrar logs:\n%s", logs.String())
		}
	})
	cfgs := make([]enrp.ServerConfig, k)
	for i := range cfgs {
		cfgs[i] = enrp.ServerConfig{
			Config: enrp.Config{
				ID:                    uint32(i + 1),
				KeepAliveInterval:     itKA,
				KeepAliveTimeout:      itKA,
				PeerHeartbeatCycle:    testenv.Scaled(100 * time.Millisecond),
				PeerMaxTimeLastHeard:  testenv.Scaled(250 * time.Millisecond),
				PeerMaxTimeNoResponse: testenv.Scaled(150 * time.Millisecond),
				TakeoverExpiry:        testenv.Scaled(300 * time.Millisecond),
				DrainTimeout:          -1,
				Logger:                logs.logger(),
			},
			Transport:  testenv.Transport(),
			ASAPListen: "127.0.0.1:0",
			ENRPListen: "127.0.0.1:0",
		}
	}
	if tune != nil {
		for i := range cfgs {
			tune(&cfgs[i])
		}
	}
	// Each registrar peers with those started before it (the others learn
	// it from its connection), so no address needs to be known in advance.
	var rs []*registrar
	for i := range cfgs {
		for _, r := range rs {
			cfgs[i].Peers = append(cfgs[i].Peers, r.srv.ENRPAddr().String())
		}
		srv, err := enrp.NewServer(context.Background(), cfgs[i])
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(context.Background())
		r := &registrar{srv: srv, cancel: rcancel, done: make(chan error, 1)}
		go func() { r.done <- srv.Run(rctx) }()
		t.Cleanup(r.stop)
		rs = append(rs, r)
	}
	if k > 1 {
		waitFor(t, 5*time.Second, "registrars peered", func() bool {
			for _, r := range rs {
				if len(r.srv.Peers()) != k-1 {
					return false
				}
			}
			return true
		})
	}
	return rs
}

// logBuf collects log lines from several goroutines.
type logBuf struct{ testenv.LogBuffer }

func (l *logBuf) logger() *slog.Logger { return l.Logger() }

func waitFor(t testing.TB, d time.Duration, what string, f func() bool, explain ...func() string) {
	t.Helper()
	deadline := time.Now().Add(testenv.Scaled(d))
	for !f() {
		if time.Now().After(deadline) {
			why := ""
			for _, e := range explain {
				why += ": " + e()
			}
			t.Fatalf("timed out waiting for %s%s", what, why)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// echoPE registers an echo service: each line is answered with
// "<peid> <line>", preceded by a cookie with the count of lines it
// answered. A cookie echo received is recorded.
type echoPE struct {
	pe     *PoolElement
	frozen atomic.Bool // a hung PE: reads requests, answers nothing
	mu     sync.Mutex
	echoes [][]byte
	served int
}

func startEchoPE(t testing.TB, handle string, regs []string, opts ...Option) *echoPE {
	t.Helper()
	return startEchoPEOn(t, "tcp", handle, regs, opts...)
}

// sessionNets are the session transports a test runs over: TCP, and SCTP
// (rsplib's session layer) where the kernel has it; inside the test VM SCTP
// must be there.
func sessionNets(t testing.TB) []string {
	if err := transport.SCTPSupported(); err != nil {
		if os.Getenv("RSPXDP_VMTEST") == "1" {
			t.Fatalf("RSPXDP_VMTEST=1 but SCTP is unavailable: %v", err)
		}
		return []string{"tcp"}
	}
	return []string{"tcp", "sctp"}
}

// startEchoPEOn starts an echo PE whose sessions run over network ("tcp"
// or "sctp").
func startEchoPEOn(t testing.TB, network, handle string, regs []string, opts ...Option) *echoPE {
	t.Helper()
	var ln net.Listener
	var err error
	if network == "sctp" {
		ln, err = transport.ListenSession(context.Background(), "127.0.0.1:0")
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	opts = append([]Option{itRegistrars(regs...), WithLogger(quiet()), WithResponseTimeout(testenv.Scaled(500 * time.Millisecond))}, opts...)
	pe, err := Register(ctx, handle, ln, opts...)
	if err != nil {
		t.Fatal(err)
	}
	e := &echoPE{pe: pe}
	go e.serve()
	t.Cleanup(func() { pe.abort() })
	return e
}

func (e *echoPE) serve() {
	for {
		s, err := e.pe.Accept()
		if err != nil {
			return
		}
		go func() {
			defer s.Close()
			r := bufio.NewReader(s)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if e.frozen.Load() {
					continue
				}
				if c := s.CookieEcho(); c != nil {
					e.mu.Lock()
					if len(e.echoes) == 0 || string(e.echoes[len(e.echoes)-1]) != string(c) {
						e.echoes = append(e.echoes, c)
					}
					e.mu.Unlock()
				}
				e.mu.Lock()
				e.served++
				n := e.served
				e.mu.Unlock()
				// State first, then the answer: a PU that has the answer
				// has read the cookie too.
				if err := s.SendCookie([]byte(fmt.Sprintf("lines=%d", n))); err != nil {
					return
				}
				if _, err := fmt.Fprintf(s, "%08x %s", e.pe.ID(), line); err != nil {
					return
				}
			}
		}()
	}
}

func (e *echoPE) cookieEchoes() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, c := range e.echoes {
		out = append(out, string(c))
	}
	return out
}

func addrs(rs []*registrar) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.addr())
	}
	return out
}

func TestRegisterResolveDeregister(t *testing.T) {
	rs := startRegistrars(t, 1)
	regs := addrs(rs)
	a := startEchoPE(t, "echo", regs, WithPolicy(policy.WeightedRoundRobin(3)))
	b := startEchoPE(t, "echo", regs, WithPolicy(policy.WeightedRoundRobin(1)))
	u, err := NewPoolUser(itRegistrars(regs...), WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	ctx := context.Background()
	pes, err := u.Resolve(ctx, "echo")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[uint32]PEInfo{}
	for _, p := range pes {
		ids[p.ID] = p
	}
	if len(ids) != 2 || ids[a.pe.ID()].Policy.Weight != 3 || ids[b.pe.ID()].Policy.Type != policy.TypeWeightedRoundRobin {
		t.Fatalf("resolution = %v, want PEs %08x (WRR 3) and %08x", pes, a.pe.ID(), b.pe.ID())
	}
	if ids[a.pe.ID()].Home != 1 || ids[a.pe.ID()].Addr.String() != a.pe.Addr().String() {
		t.Fatalf("PE info %+v: want home 1 and address %s", ids[a.pe.ID()], a.pe.Addr())
	}
	// Keep-alives at 100 ms over 5 intervals: the PE answers them or the
	// registrar would have removed it.
	time.Sleep(5 * itKA)
	if got := rs[0].srv.Count(); got != 2 {
		t.Fatalf("after keep-alives: %d PEs registered, want 2", got)
	}
	if a.pe.Home() != 1 {
		t.Fatalf("home = %d, want 1", a.pe.Home())
	}
	// Load update at run time reaches the registrar.
	a.pe.SetPolicy(policy.WeightedRoundRobin(7))
	waitFor(t, 2*time.Second, "new weight", func() bool {
		pes, err := u.Resolve(ctx, "echo")
		if err != nil {
			return false
		}
		for _, p := range pes {
			if p.ID == a.pe.ID() && p.Policy.Weight == 7 {
				return true
			}
		}
		return false
	})
	if err := a.pe.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	pes, err = u.Resolve(ctx, "echo")
	if err != nil || len(pes) != 1 || pes[0].ID != b.pe.ID() {
		t.Fatalf("after deregistration: %v, %v; want only %08x", pes, err, b.pe.ID())
	}
	if _, err := u.Resolve(ctx, "nosuchpool"); !errors.Is(err, ErrNoPE) {
		t.Fatalf("unknown pool: err = %v, want ErrNoPE", err)
	}
}

func TestRegisterErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	for _, tc := range []struct {
		name string
		opts []Option
		want string
	}{
		{"no registrar", nil, "no registrar known"},
		{"malformed", []Option{itRegistrars("localhost")}, `"localhost": want HOST:PORT`},
		{"unreachable", []Option{itRegistrars(deadAddr)}, deadAddr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := Register(ctx, "echo", ln, append(tc.opts, WithLogger(quiet()))...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// echoRound sends one line and reads the answer, retrying once on the new
// PE after a failover.
func echoRound(t testing.TB, c *Conn, r *bufio.Reader, line string) (string, *FailoverEvent) {
	t.Helper()
	var ev *FailoverEvent
	for try := 0; try < 3; try++ {
		_, err := fmt.Fprintf(c, "%s\n", line)
		if err == nil {
			var ans string
			ans, err = r.ReadString('\n')
			if err == nil {
				return strings.TrimSpace(ans), ev
			}
		}
		var fe *FailoverError
		if !errors.As(err, &fe) {
			t.Fatalf("echo %q: %v", line, err)
		}
		ev = &fe.Event
	}
	t.Fatalf("echo %q: too many failovers", line)
	return "", nil
}

func TestFailoverWithCookie(t *testing.T) {
	for _, network := range sessionNets(t) {
		t.Run(network, func(t *testing.T) { testFailoverWithCookie(t, network) })
	}
}

func testFailoverWithCookie(t *testing.T, network string) {
	rs := startRegistrars(t, 1)
	regs := addrs(rs)
	pes := map[uint32]*echoPE{}
	for i := 0; i < 3; i++ {
		e := startEchoPEOn(t, network, "echo", regs)
		pes[e.pe.ID()] = e
	}
	c, err := Dial(context.Background(), "echo", itRegistrars(regs...), WithLogger(quiet()), WithCacheStaleness(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	first := c.PE()
	if want := map[string]string{"tcp": "*net.TCPAddr", "sctp": "*sctp.SCTPAddr"}[network]; fmt.Sprintf("%T", c.RemoteAddr()) != want {
		t.Fatalf("session to %T %v, want a %s", c.RemoteAddr(), c.RemoteAddr(), want)
	}
	for i := 0; i < 3; i++ {
		ans, ev := echoRound(t, c, r, fmt.Sprintf("hello %d", i))
		if ev != nil || !strings.HasPrefix(ans, fmt.Sprintf("%08x ", first.ID)) {
			t.Fatalf("answer %q (event %v), want one from %s", ans, ev, first)
		}
	}
	waitFor(t, time.Second, "cookie", func() bool { return string(c.Cookie()) == "lines=3\x00" })
	pes[first.ID].pe.abort() // the PE dies: connections reset, no deregistration
	ans, ev := echoRound(t, c, r, "after death")
	if ev == nil || ev.From.ID != first.ID || ev.To.ID == first.ID || !ev.CookieEchoed {
		t.Fatalf("failover event = %v, want one from %s with the cookie echoed", ev, first)
	}
	if !strings.HasPrefix(ans, fmt.Sprintf("%08x ", ev.To.ID)) {
		t.Fatalf("answer %q not from the new PE %s", ans, ev.To)
	}
	select {
	case got := <-c.Failovers():
		if got.To.ID != ev.To.ID {
			t.Fatalf("channel event %v != returned %v", got, ev)
		}
	default:
		t.Fatal("failover not delivered on Failovers()")
	}
	if got := pes[ev.To.ID].cookieEchoes(); len(got) != 1 || got[0] != "lines=3\x00" {
		t.Fatalf("new PE got cookie echoes %q, want [lines=3]", got)
	}
	t.Logf("failover took %v", ev.Took)
	// The dead PE disappears from the handlespace (keep-alive timeout or
	// unreachable reports), so later resolutions do not return it.
	waitFor(t, 2*time.Second, "dead PE removed", func() bool { return rs[0].srv.Count() == 2 })
}

func TestTakeoverFollowed(t *testing.T) {
	// Peer timers with headroom: under -race on a loaded machine, 150 ms
	// without an answer can make live registrars take each other over.
	rs := startTunedRegistrars(t, 3, func(c *enrp.ServerConfig) {
		c.PeerMaxTimeLastHeard, c.PeerMaxTimeNoResponse = 400*time.Millisecond, 300*time.Millisecond
	})
	// The PEs know only registrar 1: after its death, they can only learn
	// their new home from a takeover keep-alive.
	const n = 6
	var pes []*echoPE
	for i := 0; i < n; i++ {
		pes = append(pes, startEchoPE(t, "echo", []string{rs[0].addr()}))
	}
	waitFor(t, 2*time.Second, "homes known", func() bool {
		for _, e := range pes {
			if e.pe.Home() != 1 {
				return false
			}
		}
		return true
	})
	waitFor(t, 2*time.Second, "replicated", func() bool { return rs[1].srv.Count() == n && rs[2].srv.Count() == n })
	rs[0].stop()
	waitFor(t, 5*time.Second, "takeover followed", func() bool {
		for _, e := range pes {
			if h := e.pe.Home(); h != 2 && h != 3 {
				return false
			}
		}
		return true
	})
	// They stay registered (answer the new home's keep-alives) for many
	// keep-alive intervals, and both registrars agree on who owns whom.
	time.Sleep(6 * itKA)
	for _, r := range rs[1:] {
		if r.srv.Count() != n {
			t.Fatalf("registrar %d has %d PEs after the takeover, want %d", r.srv.ID(), r.srv.Count(), n)
		}
		for _, pe := range r.srv.Snapshot()[0].PEs {
			for _, e := range pes {
				if e.pe.ID() == pe.ID && e.pe.Home() != pe.Home {
					t.Fatalf("registrar %d: PE %08x has home %d, the PE says %d", r.srv.ID(), pe.ID, pe.Home, e.pe.Home())
				}
			}
		}
	}
	for _, owner := range []uint32{2, 3} {
		if a, b := rs[1].srv.Checksum(owner), rs[2].srv.Checksum(owner); a != b {
			t.Fatalf("checksums of owner %d differ: %#04x vs %#04x", owner, a, b)
		}
	}
}

func TestHomeRegistrarDiesStaticList(t *testing.T) {
	rs := startRegistrars(t, 2)
	e := startEchoPE(t, "echo", addrs(rs), WithReregistrationInterval(testenv.Scaled(200*time.Millisecond)))
	// Either registrar may answer first (over SCTP the second often does).
	waitFor(t, 2*time.Second, "home known", func() bool { return e.pe.Home() != 0 })
	home := e.pe.Home()
	rs[home-1].stop()
	other := rs[2-home]
	waitFor(t, 5*time.Second, "new home", func() bool { return e.pe.Home() == other.srv.ID() })
	time.Sleep(4 * itKA)
	if other.srv.Count() != 1 {
		t.Fatal("PE lost after its home died")
	}
}

func TestDrainLosesNoInFlightRequest(t *testing.T) {
	rs := startRegistrars(t, 1)
	regs := addrs(rs)
	a := startEchoPE(t, "echo", regs)
	c, err := Dial(context.Background(), "echo", itRegistrars(regs...), WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	b := startEchoPE(t, "echo", regs)
	if c.PE().ID != a.pe.ID() {
		t.Fatalf("dialled %s, want the only PE then registered", c.PE())
	}
	// Load: the PU keeps requests flowing while the PE drains.
	const n = 300
	errc := make(chan error, 1)
	answered := make(chan int, 1)
	go func() {
		r := bufio.NewReader(c)
		for i := 0; i < n; i++ {
			if _, err := fmt.Fprintf(c, "req %d\n", i); err != nil {
				errc <- fmt.Errorf("request %d: %w", i, err)
				return
			}
			ans, err := r.ReadString('\n')
			if err != nil {
				errc <- fmt.Errorf("request %d: %w", i, err)
				return
			}
			if want := fmt.Sprintf("%08x req %d\n", a.pe.ID(), i); ans != want {
				errc <- fmt.Errorf("answer %q, want %q", ans, want)
				return
			}
			if i == 20 {
				answered <- i
			}
			time.Sleep(time.Millisecond)
		}
		c.Close()
		errc <- nil
	}()
	<-answered
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		drained <- a.pe.Drain(ctx)
	}()
	// New users go elsewhere while the old session is still served.
	u, err := NewPoolUser(itRegistrars(regs...), WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	waitFor(t, 2*time.Second, "deregistered", func() bool {
		pes, err := u.Resolve(context.Background(), "echo")
		return err == nil && len(pes) == 1 && pes[0].ID == b.pe.ID()
	})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v", err)
	}
}

func TestDrainDeadlineCutsSessions(t *testing.T) {
	rs := startRegistrars(t, 1)
	a := startEchoPE(t, "echo", addrs(rs))
	c, err := Dial(context.Background(), "echo", itRegistrars(addrs(rs)...), WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	echoRound(t, c, r, "x")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := a.pe.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("drain with a session open past the deadline: %v, want deadline exceeded", err)
	}
}

func TestDumpHandlespace(t *testing.T) {
	rs := startRegistrars(t, 1)
	a := startEchoPE(t, "echo", addrs(rs), WithPolicy(policy.LeastUsed(policy.MaxLoad/4)))
	b := startEchoPE(t, "daytime", addrs(rs))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := DumpHandlespace(ctx, rs[0].srv.ENRPAddr().String(), WithLogger(quiet()), itTransport())
	if err != nil {
		t.Fatal(err)
	}
	if d.Registrar != 1 || len(d.Pools) != 2 || d.Pools[0].Handle != "daytime" || d.Pools[1].PEs[0].ID != a.pe.ID() ||
		d.Pools[0].PEs[0].ID != b.pe.ID() || d.Pools[1].PEs[0].Policy.Load != policy.MaxLoad/4 {
		t.Fatalf("dump %+v", d)
	}
	if want := rs[0].srv.Checksum(1); d.Checksums[1] != want {
		t.Fatalf("checksum of registrar 1's PEs: dump %#04x, registrar %#04x", d.Checksums[1], want)
	}
	if want := rs[0].srv.Handlespace().HandlespaceChecksum(); d.Total != want {
		t.Fatalf("total checksum: dump %#04x, registrar %#04x", d.Total, want)
	}
	if _, err := DumpHandlespace(ctx, "127.0.0.1:1", WithLogger(quiet())); err == nil || !strings.Contains(err.Error(), "registrar 127.0.0.1:1 unreachable") {
		t.Fatalf("unreachable registrar: %v", err)
	}
}

func TestBusinessCardNamesFailoverPool(t *testing.T) {
	rs := startRegistrars(t, 1)
	regs := addrs(rs)
	primary := startEchoPE(t, "primary", regs)
	backup := startEchoPE(t, "backup", regs)
	c, err := Dial(context.Background(), "primary", itRegistrars(regs...), WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The primary PE hands its users a business card naming the backup
	// pool; serve() does not, so send it on the PE's side of the session.
	primary.pe.mu.Lock()
	var sess *Session
	for s := range primary.pe.sessions {
		sess = s
	}
	primary.pe.mu.Unlock()
	if sess == nil {
		waitFor(t, time.Second, "session accepted", func() bool {
			primary.pe.mu.Lock()
			defer primary.pe.mu.Unlock()
			for s := range primary.pe.sessions {
				sess = s
			}
			return sess != nil
		})
	}
	if err := sess.SendBusinessCard("backup"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	echoRound(t, c, r, "one")
	if bc := c.BusinessCard(); bc != "backup" {
		t.Fatalf("business card = %q", bc)
	}
	primary.pe.abort()
	ans, ev := echoRound(t, c, r, "two")
	if ev == nil || ev.To.ID != backup.pe.ID() || !strings.HasPrefix(ans, fmt.Sprintf("%08x ", backup.pe.ID())) {
		t.Fatalf("after the primary died: answer %q, event %v; want the backup pool's PE %08x", ans, ev, backup.pe.ID())
	}
}

func TestRegistrarsFromAnnounces(t *testing.T) {
	// A free UDP port for the announces.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	annAddr := pc.LocalAddr().String()
	pc.Close()
	srv, err := enrp.NewServer(context.Background(), enrp.ServerConfig{
		Config: enrp.Config{ID: 9, KeepAliveInterval: itKA, KeepAliveTimeout: itKA, AnnounceInterval: 50 * time.Millisecond,
			DrainTimeout: -1, Logger: quiet()},
		Transport: testenv.Transport(), ASAPListen: "127.0.0.1:0", ENRPListen: "127.0.0.1:0",
		Announce: true, AnnounceUnicast: []netip.AddrPort{netip.MustParseAddrPort(annAddr)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	pe, err := Register(rctx, "echo", ln, WithAnnounces(annAddr), WithLogger(quiet()), itTransport())
	if err != nil {
		t.Fatal(err)
	}
	defer pe.abort()
	if srv.Count() != 1 {
		t.Fatalf("registrar has %d PEs, want the one found by announce", srv.Count())
	}
}

func TestUnreachableReportRemovesPE(t *testing.T) {
	// Keep-alives too slow to notice the death within the test: only the
	// PU's Endpoint Unreachable report can remove the PE.
	rs := startTunedRegistrars(t, 1, func(c *enrp.ServerConfig) {
		c.KeepAliveInterval, c.KeepAliveTimeout, c.MaxBadPEReports = time.Minute, time.Minute, 1
	})
	regs := addrs(rs)
	a := startEchoPE(t, "echo", regs)
	b := startEchoPE(t, "echo", regs)
	c, err := Dial(context.Background(), "echo", itRegistrars(regs...), WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	echoRound(t, c, r, "one")
	dead := a
	if c.PE().ID == b.pe.ID() {
		dead = b
	}
	dead.pe.abort()
	if _, ev := echoRound(t, c, r, "two"); ev == nil {
		t.Fatal("no failover")
	}
	waitFor(t, 2*time.Second, "PE removed on the report", func() bool { return rs[0].srv.Count() == 1 })
	if snap := rs[0].srv.Snapshot(); snap[0].PEs[0].ID == dead.pe.ID() {
		t.Fatal("the live PE was removed")
	}
}

func TestResolutionCacheStaleness(t *testing.T) {
	rs := startRegistrars(t, 1)
	regs := addrs(rs)
	e := startEchoPE(t, "echo", regs)
	cached, err := NewPoolUser(itRegistrars(regs...), WithLogger(quiet()), WithCacheStaleness(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer cached.Close()
	fresh, err := NewPoolUser(itRegistrars(regs...), WithLogger(quiet()), WithCacheStaleness(0),
		WithResponseTimeout(200*time.Millisecond), WithDialTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	ctx := context.Background()
	for _, u := range []*PoolUser{cached, fresh} {
		c, err := u.Dial(ctx, "echo")
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	rs[0].stop()
	// Within its staleness the cache answers without a registrar...
	c, err := cached.Dial(ctx, "echo")
	if err != nil {
		t.Fatalf("dial from the cache: %v", err)
	}
	if c.PE().ID != e.pe.ID() {
		t.Fatalf("cached dial reached %s", c.PE())
	}
	c.Close()
	// ...a PU that never trusts its cache needs one, and says which failed.
	if _, err := fresh.Dial(ctx, "echo"); err == nil || !strings.Contains(err.Error(), "registrar "+regs[0]) {
		t.Fatalf("dial without registrar: %v, want an error naming %s", err, regs[0])
	}
}

func TestFailoverFromHungPEPastRegistrarsShortList(t *testing.T) {
	// The registrar returns one PE per resolution, always the priority
	// winner: the hung PE, still registered. The PU must ask for the whole
	// pool to find the other one.
	rs := startTunedRegistrars(t, 1, func(c *enrp.ServerConfig) { c.MaxResolutionItems = 1 })
	regs := addrs(rs)
	hung := startEchoPE(t, "echo", regs, WithPolicy(policy.Priority(10)))
	other := startEchoPE(t, "echo", regs, WithPolicy(policy.Priority(1)))
	c, err := Dial(context.Background(), "echo", itRegistrars(regs...), WithLogger(quiet()), WithCacheStaleness(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.PE().ID != hung.pe.ID() {
		t.Fatalf("dialled %s, want the priority winner", c.PE())
	}
	hung.frozen.Store(true)
	r := bufio.NewReader(c)
	fmt.Fprintf(c, "ping\n")
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := r.ReadString('\n'); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("hung PE: read %v, want a timeout (not a failover)", err)
	}
	c.SetReadDeadline(time.Time{})
	var fe *FailoverError
	if err := c.Failover(errors.New("no answer")); !errors.As(err, &fe) || fe.Event.To.ID != other.pe.ID() {
		t.Fatalf("Failover: %v, want a move to %08x", err, other.pe.ID())
	}
	r.Reset(c)
	if ans, ev := echoRound(t, c, r, "pong"); ev != nil || !strings.HasPrefix(ans, fmt.Sprintf("%08x ", other.pe.ID())) {
		t.Fatalf("after failover: %q %v", ans, ev)
	}
}

func TestPoolUserSurvivesRegistrarDeath(t *testing.T) {
	rs := startRegistrars(t, 2)
	regs := addrs(rs)
	e := startEchoPE(t, "echo", regs)
	waitFor(t, 2*time.Second, "replicated", func() bool { return rs[1].srv.Count() == 1 })
	u, err := NewPoolUser(itRegistrars(regs...), WithLogger(quiet()), WithCacheStaleness(0))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	ctx := context.Background()
	if _, err := u.Resolve(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	rs[0].stop()
	pes, err := u.Resolve(ctx, "echo")
	if err != nil || len(pes) != 1 || pes[0].ID != e.pe.ID() {
		t.Fatalf("after the first registrar died: %v, %v", pes, err)
	}
}

func TestConcurrentReadWriteSeeOneFailover(t *testing.T) {
	rs := startRegistrars(t, 1)
	regs := addrs(rs)
	pes := map[uint32]*echoPE{}
	for i := 0; i < 2; i++ {
		e := startEchoPE(t, "echo", regs)
		pes[e.pe.ID()] = e
	}
	c, err := Dial(context.Background(), "echo", itRegistrars(regs...), WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := c.PE().ID
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10)) // blocks: nothing was sent
		readErr <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the read block on the first PE
	pes[first].pe.abort()
	var rfe *FailoverError
	if err := <-readErr; !errors.As(err, &rfe) {
		t.Fatalf("blocked read: %v, want a failover", err)
	}
	// A write racing the read's failover reports the same move, or
	// succeeds on the new PE; it never triggers a second failover.
	if _, err := c.Write([]byte("x\n")); err != nil {
		var wfe *FailoverError
		if !errors.As(err, &wfe) || wfe.Event.To.ID != rfe.Event.To.ID {
			t.Fatalf("write: %v", err)
		}
	}
	if len(c.Failovers()) != 1 || c.PE().ID == first {
		t.Fatalf("%d failover events, on PE %s; want 1 away from %08x", len(c.Failovers()), c.PE(), first)
	}
}

// TestBusinessCardNamesFailoverPEs: a Business Card carries the PEs to
// fail over to (RFC 5352 and rsplib; issue 15 item 9), and the pool user
// tries them before any other PE of the pool.
func TestBusinessCardNamesFailoverPEs(t *testing.T) {
	rs := startRegistrars(t, 1)
	regs := addrs(rs)
	pes := map[uint32]*echoPE{}
	for i := 0; i < 4; i++ {
		e := startEchoPE(t, "echo", regs)
		pes[e.pe.ID()] = e
	}
	c, err := Dial(context.Background(), "echo", itRegistrars(regs...), WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	echoRound(t, c, r, "one")
	on := pes[c.PE().ID]
	u, err := NewPoolUser(itRegistrars(regs...), WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	all, err := u.Resolve(context.Background(), "echo")
	if err != nil {
		t.Fatal(err)
	}
	var target PEInfo
	for _, p := range all {
		if p.ID != on.pe.ID() {
			target = p // any other: the card, not the policy, must choose it
		}
	}
	var sess *Session
	waitFor(t, time.Second, "session accepted", func() bool {
		on.pe.mu.Lock()
		defer on.pe.mu.Unlock()
		for s := range on.pe.sessions {
			sess = s
		}
		return sess != nil
	})
	if err := sess.SendBusinessCard("echo", target); err != nil {
		t.Fatal(err)
	}
	echoRound(t, c, r, "two") // the card arrives before this answer
	if got := c.sess.lastCardPEs(); len(got) != 1 || got[0].ID != target.ID {
		t.Fatalf("business card PEs %v, want [%s]", got, target)
	}
	on.pe.abort()
	ans, ev := echoRound(t, c, r, "three")
	if ev == nil || ev.To.ID != target.ID || !strings.HasPrefix(ans, fmt.Sprintf("%08x ", target.ID)) {
		t.Fatalf("after the PE died: answer %q, event %v; want the card's PE %s", ans, ev, target)
	}
}

// TestPERecoveryLogged: a PE that lost its registrar says so, and says
// again when it is registered again (it used to re-register silently).
func TestPERecoveryLogged(t *testing.T) {
	// No graceful leave: the home just goes away, as when it crashes.
	rs := startTunedRegistrars(t, 2, func(c *enrp.ServerConfig) { c.LeaveTimeout = -1 })
	logs := &logBuf{}
	e := startEchoPE(t, "echo", addrs(rs), WithReregistrationInterval(testenv.Scaled(200*time.Millisecond)), WithLogger(logs.logger()))
	waitFor(t, 2*time.Second, "home known", func() bool { return e.pe.Home() != 0 })
	home := e.pe.Home()
	rs[home-1].stop()
	other := rs[2-home]
	waitFor(t, 5*time.Second, "new home", func() bool { return e.pe.Home() == other.srv.ID() })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("PE log:\n%s", logs.String())
		}
	})
	waitFor(t, 2*time.Second, "recovery logged", func() bool {
		return strings.Contains(logs.String(), `msg="registered again: registrar reachable" pool=echo`)
	})
	l := logs.String()
	if !strings.Contains(l, "level=WARN") || !regexp.MustCompile(`registered again: registrar reachable" pool=echo pe=`+wire.FormatID(e.pe.ID())+` outage=\S+ failures=\d+`).MatchString(l) {
		t.Fatalf("recovery line lacks the outage or the failures:\n%s", l)
	}
}
