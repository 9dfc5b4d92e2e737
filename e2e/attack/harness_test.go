package attack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/wire"
)

// bin is the rspxdp binary under test, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rspxdp-attack-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "rspxdp")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/rspxdp/rspxdp/cmd/rspxdp").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build rspxdp: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// long reports whether the long version runs (RSPXDP_ATTACK=long).
func long() bool { return os.Getenv("RSPXDP_ATTACK") == "long" }

// size picks the short or the long figure.
func size(short, long_ int) int {
	if long() {
		return long_
	}
	return short
}

// freePort returns a TCP port free on 127.0.0.1 just now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// logTail counts a process's log lines and keeps the last ones.
type logTail struct {
	mu     sync.Mutex
	lines  int
	bytes  int
	last   []string
	counts map[string]int
}

// watched are the log messages whose lines logTail counts.
var watched = []string{"peer joined", "accept failed", "undecodable message", "closing connection", "takeover initiated",
	"connection evicted", "connection refused"}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bytes += len(p)
	if l.counts == nil {
		l.counts = map[string]int{}
	}
	sc := bufio.NewScanner(bytes.NewReader(p))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l.lines++
		for _, w := range watched {
			if strings.Contains(sc.Text(), w) {
				l.counts[w]++
			}
		}
		l.last = append(l.last, sc.Text())
		if len(l.last) > 40 {
			l.last = l.last[1:]
		}
	}
	return len(p), nil
}

// count returns how many lines had the watched message w.
func (l *logTail) count(w string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[w]
}

func (l *logTail) snapshot() (lines, bytes int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lines, l.bytes
}

// registrar is an `rspxdp registrar` process.
type registrar struct {
	t          testing.TB
	id         uint32
	asap, enrp string
	args       []string
	prefix     []string // e.g. prlimit
	cmd        *exec.Cmd
	log        *logTail
	done       chan struct{}
	pki        *pki // the TLS PKI the registrar runs with, or nil
}

// peerTimers judge peers within about two seconds.
var peerTimers = []string{"--heartbeat", "500ms", "--max-time-last-heard", "1s", "--max-time-no-response", "1s",
	"--takeover-expiry", "1s", "--drain-timeout", "0"}

// fastTimers judge PEs within a second, too (a loaded machine can then
// cost the honest PE its registration: only where the attack needs it).
var fastTimers = append([]string{"--keepalive-interval", "500ms", "--keepalive-timeout", "500ms"}, peerTimers...)

// startRegistrar starts a registrar with server id id and the extra flags.
func startRegistrar(t testing.TB, id uint32, args ...string) *registrar {
	t.Helper()
	r := newRegistrar(t, id, args...)
	r.start()
	return r
}

// newRegistrar picks the registrar's ports; start runs it.
func newRegistrar(t testing.TB, id uint32, args ...string) *registrar {
	t.Helper()
	r := &registrar{t: t, id: id,
		asap: fmt.Sprintf("127.0.0.1:%d", freePort(t)), enrp: fmt.Sprintf("127.0.0.1:%d", freePort(t)), args: args}
	t.Cleanup(r.stop)
	return r
}

func (r *registrar) start() {
	r.t.Helper()
	args := append([]string{"registrar", "--id", strconv.FormatUint(uint64(r.id), 10), "--asap", r.asap, "--enrp", r.enrp, "--leave-timeout", "0"}, r.args...)
	name := bin
	if len(r.prefix) > 0 {
		name = r.prefix[0]
		args = append(append(r.prefix[1:len(r.prefix):len(r.prefix)], bin), args...)
	}
	r.log = &logTail{}
	r.cmd = exec.Command(name, args...)
	r.cmd.Stderr, r.cmd.Stdout = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.done = make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.asap, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-r.done:
			r.t.Fatalf("registrar %d exited at start: %v", r.id, r.log.last)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("registrar %d not listening: %v", r.id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signal sends sig to the registrar.
func (r *registrar) signal(sig syscall.Signal) {
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Fatal(err)
	}
}

// kill stops the process abruptly and waits for it.
func (r *registrar) kill() {
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
}

func (r *registrar) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGCONT)
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		r.kill()
	}
}

// peakRSS is the process's peak resident set (VmHWM), in MiB.
func (r *registrar) peakRSS() int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.Atoi(f[1])
			return kb / 1024
		}
	}
	return -1
}

// cpu is the process's user+system CPU time so far.
func (r *registrar) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ 100
}

// client is a raw ASAP or ENRP connection, for attackers and honest PUs.
type client struct {
	c interface {
		WriteMessage(context.Context, []byte) error
		ReadMessage(context.Context) ([]byte, error)
		Close() error
	}
	p wire.Protocol
}

func dial(ctx context.Context, p wire.Protocol, addr, src string) (*client, error) {
	return dialTLS(ctx, p, addr, src, nil)
}

// dialTLS is dial over TLS with cfg (plain TCP if cfg is nil); the
// handshake is complete when it returns.
func dialTLS(ctx context.Context, p wire.Protocol, addr, src string, cfg *tls.Config) (*client, error) {
	d := net.Dialer{Timeout: 3 * time.Second} // a SYN dropped by a full backlog is resent after 1 s
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		tc := tls.Client(nc, cfg)
		hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		nc = tc
	}
	return &client{c: &framed{nc: nc, br: bufio.NewReader(nc)}, p: p}, nil
}

// framed is RSerPool's TCP framing (the header's length) over a net.Conn,
// dialled from a chosen source address, which transport.Dial does not offer.
type framed struct {
	nc  net.Conn
	br  *bufio.Reader
	wmu sync.Mutex
}

func (f *framed) WriteMessage(ctx context.Context, b []byte) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	d, ok := ctx.Deadline()
	if !ok {
		d = time.Now().Add(5 * time.Second)
	}
	_ = f.nc.SetWriteDeadline(d)
	_, err := f.nc.Write(b)
	return err
}

func (f *framed) ReadMessage(ctx context.Context) ([]byte, error) {
	if d, ok := ctx.Deadline(); ok {
		_ = f.nc.SetReadDeadline(d)
	} else {
		_ = f.nc.SetReadDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = f.nc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	hdr, err := f.br.Peek(4)
	if err != nil {
		return nil, err
	}
	n := int(hdr[2])<<8 | int(hdr[3])
	if n < 4 {
		return nil, errors.New("bad length")
	}
	b := make([]byte, n)
	_, err = io.ReadFull(f.br, b)
	return b, err
}

func (f *framed) Close() error { return f.nc.Close() }

func (c *client) send(ctx context.Context, m msg.Message) error {
	b, err := msg.Encode(m)
	if err != nil {
		return err
	}
	return c.c.WriteMessage(ctx, b)
}

func (c *client) sendRaw(ctx context.Context, b []byte) error { return c.c.WriteMessage(ctx, b) }

// recv returns the next message that want accepts, answering keep-alives
// for the PEs it registered (ka) on the way.
func (c *client) recv(ctx context.Context, want func(msg.Message) bool) (msg.Message, error) {
	for {
		b, err := c.c.ReadMessage(ctx)
		if err != nil {
			return nil, err
		}
		m, err := msg.Decode(c.p, b)
		if err != nil {
			continue
		}
		if ka, ok := m.(msg.EndpointKeepAlive); ok {
			_ = c.send(ctx, msg.EndpointKeepAliveAck{Handle: ka.Handle, PEID: ka.PEID})
			if want == nil || !want(m) {
				continue
			}
		}
		if want == nil || want(m) {
			return m, nil
		}
	}
}

func (c *client) close() { c.c.Close() }

// load is honest PUs resolving a pool over fresh connections.
type load struct {
	ok, fail atomic.Int64
	mu       sync.Mutex
	lat      []time.Duration
	lastFail atomic.Int64 // unix ns
}

// honest starts n PUs, each resolving handle at addr every 20 ms over a new
// connection (TLS with cfg, a handshake each time; plain TCP if cfg is
// nil), until ctx ends.
func honest(ctx context.Context, addr, handle string, n int, cfg *tls.Config) *load {
	l := &load{}
	for range n {
		go func() {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				start := time.Now()
				ok := resolveTLS(ctx, addr, handle, cfg)
				if ctx.Err() != nil {
					return
				}
				if ok {
					l.ok.Add(1)
					l.mu.Lock()
					l.lat = append(l.lat, time.Since(start))
					l.mu.Unlock()
				} else {
					l.fail.Add(1)
					l.lastFail.Store(time.Now().UnixNano())
				}
			}
		}()
	}
	return l
}

// resolveTimeout bounds one honest resolution, connection set-up included.
const resolveTimeout = 2 * time.Second

func resolveOnce(ctx context.Context, addr, handle string) bool {
	return resolveTLS(ctx, addr, handle, nil)
}

// resolveTLS is resolveOnce over TLS with cfg (plain TCP if nil).
func resolveTLS(ctx context.Context, addr, handle string, cfg *tls.Config) bool {
	r, err := resolvePEs(ctx, addr, handle, 0, cfg)
	return err == nil && r.Cause == 0 && len(r.PEs) > 0
}

// resolvePEs resolves handle at addr for up to items PEs (0: the
// registrar's choice) over a new connection and returns the answer.
func resolvePEs(ctx context.Context, addr, handle string, items uint32, cfg *tls.Config) (msg.HandleResolutionResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	c, err := dialTLS(ctx, wire.ASAP, addr, "127.0.0.1", cfg)
	if err != nil {
		return msg.HandleResolutionResponse{}, err
	}
	defer c.close()
	if err := c.send(ctx, msg.HandleResolution{Handle: handle, MaxItems: items}); err != nil {
		return msg.HandleResolutionResponse{}, err
	}
	m, err := c.recv(ctx, func(m msg.Message) bool { _, ok := m.(msg.HandleResolutionResponse); return ok })
	if err != nil {
		return msg.HandleResolutionResponse{}, err
	}
	return m.(msg.HandleResolutionResponse), nil
}

func (l *load) reset() {
	l.ok.Store(0)
	l.fail.Store(0)
	l.mu.Lock()
	l.lat = nil
	l.mu.Unlock()
}

// figures returns the success rate in percent, the answers counted and the
// p99 latency.
func (l *load) figures() (rate float64, total int64, p99 time.Duration) {
	ok, fail := l.ok.Load(), l.fail.Load()
	total = ok + fail
	if total > 0 {
		rate = 100 * float64(ok) / float64(total)
	}
	l.mu.Lock()
	lat := slices.Clone(l.lat)
	l.mu.Unlock()
	slices.Sort(lat)
	if len(lat) > 0 {
		p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return rate, total, p99
}

// registerPE registers a PE over a raw ASAP connection that answers its
// keep-alives until ctx ends (the registrar reaches it there).
func registerPE(ctx context.Context, t testing.TB, addr, handle string, pe msg.PoolElement) *client {
	t.Helper()
	return registerPETLS(ctx, t, addr, handle, pe, nil)
}

// registerPETLS is registerPE over TLS with cfg (plain TCP if nil).
func registerPETLS(ctx context.Context, t testing.TB, addr, handle string, pe msg.PoolElement, cfg *tls.Config) *client {
	t.Helper()
	c, err := dialTLS(ctx, wire.ASAP, addr, "127.0.0.1", cfg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.send(rctx, msg.Registration{Handle: handle, PE: pe}); err != nil {
		t.Fatal(err)
	}
	m, err := c.recv(rctx, func(m msg.Message) bool { _, ok := m.(msg.RegistrationResponse); return ok })
	if err != nil {
		t.Fatalf("registration of PE %d: %v", pe.ID, err)
	}
	if r := m.(msg.RegistrationResponse); r.Reject {
		t.Fatalf("registration of PE %d rejected: %v", pe.ID, r.Cause)
	}
	go func() {
		defer c.close()
		go func() { <-ctx.Done(); c.close() }()
		_, _ = c.recv(ctx, func(msg.Message) bool { return false })
	}()
	return c
}

// report is one attack's figures.
type report struct {
	name      string
	rss       int
	rate      float64
	answers   int64
	p99       time.Duration
	recovered time.Duration
	note      string
}

func (r report) String() string {
	return fmt.Sprintf("attack %-16s peak RSS %4d MiB | honest PUs %6.2f%% of %5d answered, p99 %7v | normal again after %7v | %s",
		r.name, r.rss, r.rate, r.answers, r.p99.Round(time.Millisecond), r.recovered.Round(time.Millisecond), r.note)
}

// recovery waits until the honest PUs have had no failure for a second and
// returns how long after since that took.
func (l *load) recovery(since time.Time, limit time.Duration) time.Duration {
	for time.Since(since) < limit {
		last := time.Unix(0, l.lastFail.Load())
		if time.Since(last) > time.Second && time.Since(since) > time.Second {
			if last.Before(since) {
				return 0
			}
			return last.Sub(since)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return limit
}

var quiet = slog.New(slog.DiscardHandler)
