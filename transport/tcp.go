package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// TCP is rspxdp's TCP mapping of ASAP and ENRP, optionally inside TLS. See
// the package documentation for the framing.
type TCP struct {
	cfg  Config
	tls  *tls.Config
	name string
}

// NewTCP returns the plain TCP transport for cfg.Protocol.
func NewTCP(cfg Config) (*TCP, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &TCP{cfg: cfg, name: "tcp"}, nil
}

// NewTLS returns the TCP transport with every connection inside TLS
// configured by tlsConfig (which must hold this side's certificate for
// listening, and the roots that verify the peer). tlsConfig is cloned; a
// zero MinVersion becomes TLS 1.3. Framing is the same as plain TCP, inside
// the TLS stream.
func NewTLS(cfg Config, tlsConfig *tls.Config) (*TCP, error) {
	if tlsConfig == nil {
		return nil, errors.New("tls transport: nil tls.Config")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	tc := tlsConfig.Clone()
	if tc.MinVersion == 0 {
		tc.MinVersion = tls.VersionTLS13
	}
	return &TCP{cfg: cfg, tls: tc, name: "tls"}, nil
}

// Name returns "tcp" or "tls".
func (t *TCP) Name() string { return t.name }

// Listen binds a TCP listener on addr.
func (t *TCP) Listen(ctx context.Context, addr string) (Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listen %s on %s: %w", t.name, t.cfg.Protocol, addr, err)
	}
	return &tcpListener{t: t, ln: ln.(*net.TCPListener)}, nil
}

// Dial connects to addr; with TLS, the handshake is done before it returns,
// so Peer is already known.
func (t *TCP) Dial(ctx context.Context, addr string) (Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s dial %s %s: %w", t.name, t.cfg.Protocol, addr, err)
	}
	host, _, _ := net.SplitHostPort(addr)
	c, err := t.wrap(nc, false, host)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("%s dial %s %s: %w", t.name, t.cfg.Protocol, addr, err)
	}
	if t.tls != nil {
		if err := c.handshake(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s dial %s %s: %w", t.name, t.cfg.Protocol, addr, err)
		}
	}
	return c, nil
}

// wrap makes nc a message connection; serverName is the host the client
// dialled, which its TLS handshake verifies unless the config names one.
func (t *TCP) wrap(nc net.Conn, server bool, serverName string) (*streamConn, error) {
	tc := nc.(*net.TCPConn)
	// One message per write and no Nagle: RSerPool messages are small and
	// latency-bound (a handle resolution waits for its answer).
	if err := tc.SetNoDelay(true); err != nil {
		return nil, fmt.Errorf("set TCP_NODELAY: %w", err)
	}
	c := &streamConn{t: t, raw: tc, c: tc, server: server}
	c.rw = newWatcher(func() { _ = c.c.SetReadDeadline(time.Unix(1, 0)) })
	c.ww = newWatcher(func() { _ = c.c.SetWriteDeadline(time.Unix(1, 0)) })
	if t.tls != nil {
		if server {
			c.tlsConn = tls.Server(tc, t.tls)
		} else {
			cfg := t.tls
			if cfg.ServerName == "" && serverName != "" {
				// Verify the name we dialled, as crypto/tls.Dial does.
				cfg = cfg.Clone()
				cfg.ServerName = serverName
			}
			c.tlsConn = tls.Client(tc, cfg)
		}
		c.c = c.tlsConn
	} else {
		c.handshook.Store(true)
	}
	c.br = bufio.NewReaderSize(c.c, 4096)
	return c, nil
}

type tcpListener struct {
	t  *TCP
	ln *net.TCPListener
	mu sync.Mutex // serialises Accept so deadline juggling stays coherent
}

func (l *tcpListener) Addr() net.Addr { return l.ln.Addr() }
func (l *tcpListener) Close() error   { return l.ln.Close() }

func (l *tcpListener) Accept(ctx context.Context) (Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	stop := watch(ctx, func() { _ = l.ln.SetDeadline(time.Unix(1, 0)) })
	nc, err := l.ln.AcceptTCP()
	if stop() {
		_ = l.ln.SetDeadline(time.Time{})
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s accept %s: %w", l.t.name, l.t.cfg.Protocol, err)
	}
	c, err := l.t.wrap(nc, true, "")
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("%s accept %s: %w", l.t.name, l.t.cfg.Protocol, err)
	}
	return c, nil
}

// streamConn frames messages on a byte stream (TCP or TLS).
type streamConn struct {
	t       *TCP
	raw     *net.TCPConn
	c       net.Conn // raw, or tlsConn
	tlsConn *tls.Conn
	br      *bufio.Reader
	buf     []byte
	wbuf    []byte // WriteMessages' batch, under wmu
	rw, ww  *watcher
	server  bool

	wmu       sync.Mutex
	hmu       sync.Mutex
	handshook atomic.Bool
	peer      atomic.Pointer[Identity]
	closed    atomic.Bool
}

// MessageBuffered implements Pending: a whole frame (its header's length)
// is in the read buffer.
func (c *streamConn) MessageBuffered() bool {
	n := c.br.Buffered()
	if n < HeaderLen {
		return false
	}
	h, err := c.br.Peek(HeaderLen)
	return err == nil && int(binary.BigEndian.Uint16(h[2:4])) <= n
}

func (c *streamConn) LocalAddr() net.Addr  { return c.raw.LocalAddr() }
func (c *streamConn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

func (c *streamConn) Peer() Identity {
	if p := c.peer.Load(); p != nil {
		return *p
	}
	return Identity{}
}

func (c *streamConn) Close() error {
	c.closed.Store(true)
	err := c.c.Close()
	c.rw.close()
	c.ww.close()
	return err
}

// handshake runs the TLS handshake once. On an accepted connection it is
// bounded by the handshake timeout too: a peer that connects and says
// nothing is cut off like one that stalls mid-frame.
func (c *streamConn) handshake(ctx context.Context) error {
	if c.handshook.Load() {
		return nil
	}
	c.hmu.Lock()
	defer c.hmu.Unlock()
	if c.handshook.Load() {
		return nil
	}
	hctx, cancel := ctx, context.CancelFunc(func() {})
	if c.server {
		hctx, cancel = context.WithTimeout(ctx, c.t.cfg.HandshakeTimeout)
	}
	defer cancel()
	if err := c.tlsConn.HandshakeContext(hctx); err != nil {
		if cerr := ctxExpired(ctx); cerr != nil {
			_ = c.Close()
			return fmt.Errorf("TLS handshake with %v: %w", c.RemoteAddr(), cerr)
		}
		if hctx.Err() != nil {
			// Our own bound ran out: the peer stalled in the handshake.
			return c.fail(&FrameError{Err: ErrStalled, Cause: fmt.Errorf("TLS handshake not done within %v", c.t.cfg.HandshakeTimeout)})
		}
		c.t.cfg.Logger.Warn("closing connection", "transport", c.t.name, "protocol", c.t.cfg.Protocol.String(),
			"remote", c.RemoteAddr().String(), "reason", "TLS handshake: "+err.Error())
		_ = c.Close()
		return fmt.Errorf("TLS handshake with %v: %w", c.RemoteAddr(), err)
	}
	st := c.tlsConn.ConnectionState()
	id := Identity{}
	if len(st.VerifiedChains) > 0 {
		id.Chain = st.VerifiedChains[0]
	}
	c.peer.Store(&id)
	c.handshook.Store(true)
	return nil
}

// setReadDeadline sets d and then reports whether ctx ended meanwhile. The
// order matters: a cancellation landing before the Set is seen by the
// check, one landing after it overrides d with a past deadline.
func (c *streamConn) setReadDeadline(ctx context.Context, d time.Time) error {
	if err := c.c.SetReadDeadline(d); err != nil {
		return err
	}
	return ctx.Err()
}

// watch runs interrupt when ctx ends, until the returned stop is called.
// stop waits for a running interrupt to finish, so a late one cannot poison
// the next operation's deadline, and reports whether interrupt ran.
func watch(ctx context.Context, interrupt func()) (stop func() bool) {
	if ctx.Done() == nil {
		return func() bool { return false }
	}
	done := make(chan struct{})
	s := context.AfterFunc(ctx, func() { interrupt(); close(done) })
	return func() bool {
		if s() {
			return false
		}
		<-done
		return true
	}
}

// watcher is watch for one direction of a connection, kept armed across
// calls made with the same context. Registering a context.AfterFunc per
// message allocated and took the parent context's lock on every read and
// write, which every connection of a server shares: at tens of thousands of
// messages per second that lock was a contention point in the latency tail.
// An interrupt that fires between two calls with the same context is
// harmless: that context is done, and both directions check ctx.Err()
// after setting their deadline. One call at a time may use the watcher;
// shut may race with it.
type watcher struct {
	interrupt func()
	fired     chan struct{} // one token per interrupt that ran
	fire      func()

	mu   sync.Mutex
	done <-chan struct{} // ctx.Done() of the armed context
	stop func() bool     // disarms it; nil when nothing is armed
	shut bool            // the connection is closed: arm no more
}

func newWatcher(interrupt func()) *watcher {
	w := &watcher{interrupt: interrupt, fired: make(chan struct{}, 1)}
	w.fire = func() { w.interrupt(); w.fired <- struct{}{} }
	return w
}

// arm makes sure an interrupt is armed for ctx's end.
func (w *watcher) arm(ctx context.Context) {
	done := ctx.Done()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.shut || (w.stop != nil && done == w.done) {
		return
	}
	w.disarmLocked()
	if done == nil {
		return
	}
	w.done, w.stop = done, context.AfterFunc(ctx, w.fire)
}

// disarmLocked removes the armed interrupt, waiting for one already under
// way so that it cannot poison a later call's deadline, and reports
// whether it ran.
func (w *watcher) disarmLocked() bool {
	if w.stop == nil {
		return false
	}
	stop := w.stop
	w.stop, w.done = nil, nil
	if stop() {
		return false
	}
	<-w.fired
	return true
}

// close disarms w for good, so a closed connection leaves nothing
// registered with a long-lived context.
func (w *watcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.shut = true
	w.disarmLocked()
}

func ctxExpired(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func (c *streamConn) fail(fe *FrameError) error {
	fe.Remote = c.RemoteAddr()
	closeLogged(c.t.cfg.Logger, c.t.cfg.Protocol, c.t.name, c, fe)
	return fe
}

func (c *streamConn) ReadMessage(ctx context.Context) ([]byte, error) {
	if err := c.handshake(ctx); err != nil {
		return nil, err
	}
	c.rw.arm(ctx)

	cfg := &c.t.cfg
	// Between messages: wait as long as the idle timeout (or ctx) allows.
	if c.br.Buffered() == 0 {
		if err := c.setReadDeadline(ctx, readDeadline(ctx, cfg.IdleTimeout)); err != nil {
			return nil, err
		}
		if _, err := c.br.Peek(1); err != nil {
			switch {
			case errors.Is(err, io.EOF):
				return nil, io.EOF
			case isTimeout(err):
				if cerr := ctxExpired(ctx); cerr != nil {
					return nil, cerr
				}
				return nil, c.fail(&FrameError{Err: ErrIdle, Cause: fmt.Errorf("nothing received for %v", cfg.IdleTimeout)})
			case c.closed.Load():
				return nil, fmt.Errorf("read %s message: %w", cfg.Protocol, net.ErrClosed)
			}
			return nil, fmt.Errorf("read %s message from %v: %w", cfg.Protocol, c.RemoteAddr(), err)
		}
	}
	// Inside a frame: the rest must come within the frame timeout.
	frameDeadline := false
	need := func(n int) error {
		if c.br.Buffered() >= n || frameDeadline {
			return nil
		}
		frameDeadline = true
		return c.setReadDeadline(ctx, deadlineFor(ctx, time.Now(), cfg.FrameTimeout))
	}
	midFrame := func(err error, length, got int) error {
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return c.fail(&FrameError{Err: ErrTruncated, Length: length, Got: got})
		case isTimeout(err):
			if cerr := ctxExpired(ctx); cerr != nil {
				// The stream is now out of step: nothing can resume it.
				_ = c.Close()
				return fmt.Errorf("read %s message from %v: abandoned mid-frame: %w", cfg.Protocol, c.RemoteAddr(), cerr)
			}
			return c.fail(&FrameError{Err: ErrStalled, Length: length, Got: got, Cause: fmt.Errorf("frame timeout %v", cfg.FrameTimeout)})
		}
		_ = c.Close()
		return fmt.Errorf("read %s message from %v: %w", cfg.Protocol, c.RemoteAddr(), err)
	}
	if err := need(HeaderLen); err != nil {
		_ = c.Close()
		return nil, err
	}
	hdr, err := c.br.Peek(HeaderLen)
	if err != nil {
		return nil, midFrame(err, 0, len(hdr))
	}
	length := int(binary.BigEndian.Uint16(hdr[2:4]))
	if length < HeaderLen {
		return nil, c.fail(&FrameError{Err: ErrBadLength, Length: length})
	}
	if length > cfg.MaxMessageSize {
		return nil, c.fail(&FrameError{Err: ErrOversized, Length: length, Cause: fmt.Errorf("maximum %d", cfg.MaxMessageSize)})
	}
	if cap(c.buf) < length {
		c.buf = make([]byte, length, max(length, 1024))
	}
	c.buf = c.buf[:length]
	if err := need(length); err != nil {
		_ = c.Close()
		return nil, err
	}
	if n, err := io.ReadFull(c.br, c.buf); err != nil {
		return nil, midFrame(err, length, n)
	}
	return c.buf, nil
}

func (c *streamConn) WriteMessage(ctx context.Context, msg []byte) error {
	if err := checkOutgoing(msg, MaxMessageSize); err != nil {
		return err
	}
	if err := c.handshake(ctx); err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(ctx, msg)
}

// WriteMessages implements BatchWriter: the messages are copied into one
// buffer and written with one call, which over TLS is also one record.
func (c *streamConn) WriteMessages(ctx context.Context, msgs [][]byte) error {
	for _, m := range msgs {
		if err := checkOutgoing(m, MaxMessageSize); err != nil {
			return err
		}
	}
	if err := c.handshake(ctx); err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = c.wbuf[:0]
	for _, m := range msgs {
		c.wbuf = append(c.wbuf, m...)
	}
	err := c.writeLocked(ctx, c.wbuf)
	if cap(c.wbuf) > maxBatchBuffer {
		c.wbuf = nil // one large burst should not pin its buffer for good
	}
	return err
}

// maxBatchBuffer bounds the batch buffer a connection keeps between writes.
const maxBatchBuffer = 64 << 10

// writeLocked writes b, whole frames, with c.wmu held.
func (c *streamConn) writeLocked(ctx context.Context, b []byte) error {
	cfg := &c.t.cfg
	// Armed before the deadline is set: arming waits out an interrupt
	// of an earlier, ended context, which would otherwise land after it.
	c.ww.arm(ctx)
	if err := c.c.SetWriteDeadline(deadlineFor(ctx, time.Now(), cfg.WriteTimeout)); err != nil {
		return fmt.Errorf("write %s message to %v: %w", cfg.Protocol, c.RemoteAddr(), err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := c.c.Write(b); err != nil {
		// A partly written frame leaves the stream out of step.
		if !c.closed.Load() {
			c.t.cfg.Logger.Warn("closing connection", "transport", c.t.name, "protocol", cfg.Protocol.String(),
				"remote", c.RemoteAddr().String(), "reason", "write: "+err.Error())
		}
		_ = c.Close()
		if cerr := ctxExpired(ctx); cerr != nil {
			return fmt.Errorf("write %s message to %v: %w", cfg.Protocol, c.RemoteAddr(), cerr)
		}
		return fmt.Errorf("write %s message to %v: %w", cfg.Protocol, c.RemoteAddr(), err)
	}
	return nil
}
