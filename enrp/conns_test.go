package enrp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/transport"
	"github.com/rspxdp/rspxdp/wire"
)

// tcpConfig is itConfig over plain TCP: these tests dial raw sockets from
// chosen source addresses.
func tcpConfig(id uint32) ServerConfig {
	cfg := itConfig(id)
	cfg.Transport = "tcp"
	return cfg
}

// dialFrom opens an ASAP TCP connection to addr from the loopback address
// src (any 127/8 address is local on Linux).
func dialFrom(t testing.TB, src, addr string) *rpc {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rpc{conn: rawConn{nc}}
}

// rawConn is a minimal transport.Conn over a net.Conn for the tests.
type rawConn struct{ net.Conn }

func (r rawConn) ReadMessage(ctx context.Context) ([]byte, error) {
	if d, ok := ctx.Deadline(); ok {
		_ = r.SetReadDeadline(d)
	}
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(r.Conn, hdr); err != nil {
		return nil, err
	}
	n := int(hdr[2])<<8 | int(hdr[3])
	b := make([]byte, n)
	copy(b, hdr)
	_, err := io.ReadFull(r.Conn, b[4:])
	return b, err
}

func (r rawConn) WriteMessage(_ context.Context, b []byte) error {
	_, err := r.Write(b)
	return err
}

func (r rawConn) Peer() transport.Identity { return transport.Identity{} }

func served(t testing.TB, r *rpc) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := r.call(ctx, HandleResolution{Handle: "none"})
	return err == nil
}

// closedByServer reports whether the server closed r's connection within
// the given time (a quiet open connection only times out).
func closedByServer(r *rpc, within time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		_, err := r.conn.ReadMessage(ctx)
		if err == nil {
			continue // a keep-alive or a late answer
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

// When the listener is full, a newcomer is served and the connection quiet
// longest that serves nothing is closed for it (issue 19 item 3); a
// connection a PE registered on is never the one evicted.
func TestEvictIdlestWhenFull(t *testing.T) {
	cfg := tcpConfig(1)
	cfg.MaxConnections = 2
	n := startNode(t, cfg)
	addr := n.srv.ASAPAddr().String()
	a := dialFrom(t, "127.0.0.1", addr)
	if !served(t, a) {
		t.Fatal("first connection not served")
	}
	time.Sleep(20 * time.Millisecond)
	b := dialFrom(t, "127.0.0.1", addr)
	if !served(t, b) {
		t.Fatal("second connection not served")
	}
	c := dialFrom(t, "127.0.0.1", addr)
	if !served(t, c) {
		t.Fatal("newcomer not served on a full listener")
	}
	if !closedByServer(a, 2*time.Second) {
		t.Fatal("the idlest connection was not evicted")
	}
	if got := n.srv.Counters().ConnectionsEvicted; got != 1 {
		t.Fatalf("ConnectionsEvicted = %d, want 1", got)
	}

	// b and c now each carry a PE: nothing is evictable, the next is refused.
	for i, r := range []*rpc{b, c} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := r.call(ctx, Registration{Handle: "p", PE: testPE(uint32(i + 1))})
		cancel()
		if rr, ok := resp.(RegistrationResponse); err != nil || !ok || rr.Reject {
			t.Fatalf("registration %d: %v %v", i, resp, err)
		}
	}
	d := dialFrom(t, "127.0.0.1", addr)
	if served(t, d) {
		t.Fatal("a connection was served by evicting one a PE is registered on")
	}
	if n.srv.Count() != 2 {
		t.Fatalf("PEs = %d, want 2", n.srv.Count())
	}
}

// One source cannot take more than MaxConnectionsPerSource slots; another
// source is still served.
func TestMaxConnectionsPerSource(t *testing.T) {
	cfg := tcpConfig(1)
	cfg.MaxConnectionsPerSource = 2
	n := startNode(t, cfg)
	addr := n.srv.ASAPAddr().String()
	for i := range 2 {
		if !served(t, dialFrom(t, "127.0.0.2", addr)) {
			t.Fatalf("connection %d within the per-source bound not served", i)
		}
	}
	if served(t, dialFrom(t, "127.0.0.2", addr)) {
		t.Fatal("third connection from one source served")
	}
	if !served(t, dialFrom(t, "127.0.0.3", addr)) {
		t.Fatal("another source not served")
	}
	if got := n.srv.Counters().ConnectionsRefused; got != 1 {
		t.Fatalf("ConnectionsRefused = %d, want 1", got)
	}
}

// A connection that sends nothing is closed after FirstMessageTimeout, on
// both listeners, and its slot is freed.
func TestFirstMessageTimeout(t *testing.T) {
	cfg := tcpConfig(1)
	cfg.FirstMessageTimeout = 100 * time.Millisecond
	n := startNode(t, cfg)
	for _, addr := range []string{n.srv.ASAPAddr().String(), n.srv.ENRPAddr().String()} {
		r := dialFrom(t, "127.0.0.1", addr)
		if !closedByServer(r, 3*time.Second) {
			t.Fatalf("%s: silent connection not closed", addr)
		}
	}
	if got := n.srv.Counters().FirstMessageTimeouts; got != 2 {
		t.Fatalf("FirstMessageTimeouts = %d, want 2", got)
	}
	// A connection that speaks in time stays.
	r := dialFrom(t, "127.0.0.1", n.srv.ASAPAddr().String())
	if !served(t, r) {
		t.Fatal("speaking connection not served")
	}
	time.Sleep(300 * time.Millisecond)
	if !served(t, r) {
		t.Fatal("a connection that spoke was closed by the first-message timeout")
	}
}

// A connection that spoke and then fell silent is closed after IdleTimeout
// unless a PE is registered on it (issue 19 item 3: idle timeouts), so an
// attacker's resolving-once connections do not hold slots until the
// listener is full.
func TestIdleTimeout(t *testing.T) {
	cfg := tcpConfig(1)
	cfg.IdleTimeout = 200 * time.Millisecond
	// The raw PE below answers no keep-alives: keep it registered for the
	// test's length so only idleness can close its connection.
	cfg.KeepAliveInterval, cfg.KeepAliveTimeout = time.Minute, time.Minute
	n := startNode(t, cfg)
	addr := n.srv.ASAPAddr().String()
	pu := dialFrom(t, "127.0.0.1", addr)
	if !served(t, pu) {
		t.Fatal("PU not served")
	}
	pe := dialFrom(t, "127.0.0.1", addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	resp, err := pe.call(ctx, Registration{Handle: "p", PE: testPE(1)})
	cancel()
	if rr, ok := resp.(RegistrationResponse); err != nil || !ok || rr.Reject {
		t.Fatalf("registration: %v %v", resp, err)
	}
	if !closedByServer(pu, 5*time.Second) {
		t.Fatal("idle PU connection not closed")
	}
	if got := n.srv.Counters().IdleClosed; got != 1 {
		t.Fatalf("IdleClosed = %d, want 1 (the PE's connection must stay)", got)
	}
	if n.srv.Count() != 1 {
		t.Fatalf("PEs = %d, want 1", n.srv.Count())
	}
}

// With a negative IdleTimeout nothing is closed for being idle.
func TestIdleTimeoutOff(t *testing.T) {
	cfg := tcpConfig(1)
	cfg.IdleTimeout = -1
	n := startNode(t, cfg)
	pu := dialFrom(t, "127.0.0.1", n.srv.ASAPAddr().String())
	if !served(t, pu) {
		t.Fatal("PU not served")
	}
	if got := n.srv.closeIdle(time.Now().Add(time.Hour)); got != 0 {
		t.Fatalf("closeIdle with IdleTimeout off closed %d", got)
	}
}

// Idle connections cost little memory: 400 open ENRP connections that have
// proved nothing take far less than the 1.5 MiB each a preallocated peer
// queue did (issue 19 item 1).
func TestIdleConnectionMemory(t *testing.T) {
	cfg := tcpConfig(1)
	cfg.FirstMessageTimeout = time.Minute
	n := startNode(t, cfg)
	addr := n.srv.ENRPAddr().String()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const conns = 400
	for range conns {
		dialFrom(t, "127.0.0.1", addr)
	}
	// counts takes the table's lock: the accept loop writes total.
	accepted := func() int { total, _ := n.srv.conns[wire.ENRP].counts(netip.Prefix{}); return total }
	if _, err := eventually(5*time.Second, func() bool { return accepted() == conns }); err != nil {
		t.Fatalf("only %d connections accepted", accepted())
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse)) / conns
	t.Logf("%d bytes per idle ENRP connection (heap and stacks, both ends in this process)", per)
	if per > 64<<10 {
		t.Fatalf("%d bytes per idle connection, want under 64 KiB", per)
	}
}

// A link's queue is bounded by its role: an ENRP connection that has not
// introduced itself is closed at the small bound, a peer's at the large one,
// and the server-wide budget closes a link that would exceed it.
func TestQueueBoundsByRole(t *testing.T) {
	mk := func(p wire.Protocol, peer bool, budget int64) *link {
		l := &link{proto: p, done: make(chan struct{}), budget: &queueBudget{max: budget}, conn: nopConn{}}
		l.q.wake = make(chan struct{}, 1)
		l.peer.Store(peer)
		return l
	}
	fill := func(l *link) int {
		n := 0
		for l.enqueue(make([]byte, 16)) {
			n++
			if n > 1<<20 {
				break
			}
		}
		return n
	}
	tests := []struct {
		name   string
		proto  wire.Protocol
		peer   bool
		budget int64
		want   int
	}{
		{"unproven ENRP", wire.ENRP, false, 1 << 30, unprovenQueue.msgs},
		{"ENRP peer", wire.ENRP, true, 1 << 30, peerQueue.msgs},
		{"ASAP", wire.ASAP, false, 1 << 30, asapQueue.msgs},
		{"budget", wire.ENRP, true, 160, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mk(tt.proto, tt.peer, tt.budget)
			if got := fill(l); got != tt.want {
				t.Fatalf("queued %d, want %d", got, tt.want)
			}
			if !l.overflow.Load() {
				t.Fatal("overflow not recorded")
			}
			l.drainQueue()
			if l.budget.used.Load() != 0 || l.unsent.Load() != 0 {
				t.Fatalf("budget %d, unsent %d after drain", l.budget.used.Load(), l.unsent.Load())
			}
		})
	}
}

type nopConn struct{ transport.Conn }

func (nopConn) Close() error { return nil }

// failingListener fails every Accept until ctx ends, counting the calls.
type failingListener struct {
	calls atomic.Int64
}

func (f *failingListener) Accept(ctx context.Context) (transport.Conn, error) {
	f.calls.Add(1)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("accept: %w", errEMFILE)
}
func (f *failingListener) Close() error   { return nil }
func (f *failingListener) Addr() net.Addr { return &net.TCPAddr{} }

var errEMFILE = errors.New("too many open files")

// countingHandler counts log records.
type countingHandler struct {
	mu sync.Mutex
	n  int
	slog.Handler
}

func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "accept failed") {
		h.mu.Lock()
		h.n++
		h.mu.Unlock()
	}
	return nil
}
func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countingHandler) WithGroup(string) slog.Handler            { return h }

// An accept loop that keeps failing (out of descriptors) backs off instead
// of spinning, logs once per interval, and counts every failure (issue 19
// item 4).
func TestAcceptBackoff(t *testing.T) {
	h := &countingHandler{}
	s := &Server{log: slog.New(h)}
	ln := &failingListener{}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	s.wg.Add(1)
	s.acceptLoop(ctx, ln, wire.ASAP)
	calls := ln.calls.Load()
	if calls > 20 {
		t.Fatalf("%d accepts in 0.5 s: the loop spins", calls)
	}
	if h.n != 1 {
		t.Fatalf("%d log records, want 1 per interval", h.n)
	}
	if got := s.stats.acceptErrors.Load(); got < uint64(calls)-1 {
		t.Fatalf("acceptErrors = %d for %d failed accepts", got, calls)
	}
}

// The default connection bound fits two listeners under the descriptor
// limit.
func TestSizeConnections(t *testing.T) {
	for _, tt := range []struct{ want, limit, got int }{
		{10000, 0, 10000},
		{10000, 1 << 20, 10000},
		{10000, 1024, 256},
		{10000, 65536, 10000},
		{10000, 20000, 9744},
		{10000, 100, 16},
	} {
		if g := sizeConnections(tt.want, tt.limit); g != tt.got {
			t.Errorf("sizeConnections(%d, %d) = %d, want %d", tt.want, tt.limit, g, tt.got)
		}
	}
}
