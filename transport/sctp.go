package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/ishidawataru/sctp"
	"golang.org/x/sys/unix"
)

// ErrSCTPUnsupported is returned when the running kernel cannot open SCTP
// sockets.
var ErrSCTPUnsupported = errors.New("kernel has no SCTP support: load it with `modprobe sctp`, or use --transport tcp")

// SCTPSupported returns nil when this kernel opens SCTP sockets, and an
// error wrapping ErrSCTPUnsupported when it does not.
func SCTPSupported() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ESOCKTNOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) {
			return fmt.Errorf("%w (socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP): %v)", ErrSCTPUnsupported, err)
		}
		return fmt.Errorf("probe SCTP: %w", err)
	}
	unix.Close(fd)
	return nil
}

// SCTP carries ASAP or ENRP over SCTP, as the RFCs define them: one-to-one
// style sockets (one association per socket), every message sent with the
// protocol's PPID and checked for it on receive.
//
// github.com/ishidawataru/sctp provides the SCTP specifics (address
// resolution, bindx/connectx, send with SCTP_SNDRCV). Its SCTPConn does
// blocking system calls without deadlines, so the sockets here are
// non-blocking and driven through the Go poller: Accept, Dial, ReadMessage
// and WriteMessage all honour contexts and timeouts like the TCP transport.
type SCTP struct {
	cfg Config
	// local is the first listener's bound address, which Dial binds to
	// when cfg.DialFromListener is set.
	local atomic.Pointer[sctp.SCTPAddr]
}

// NewSCTP returns the SCTP transport for cfg.Protocol, or an error wrapping
// ErrSCTPUnsupported when the kernel has no SCTP.
func NewSCTP(cfg Config) (*SCTP, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := SCTPSupported(); err != nil {
		return nil, fmt.Errorf("sctp transport for %s: %w", cfg.Protocol, err)
	}
	return &SCTP{cfg: cfg}, nil
}

// Name returns "sctp".
func (s *SCTP) Name() string { return "sctp" }

func sctpSocket(addr *sctp.SCTPAddr) (int, error) {
	af := unix.AF_INET
	for _, ip := range addr.IPAddrs {
		if ip.IP.To4() == nil {
			af = unix.AF_INET6
		}
	}
	fd, err := unix.Socket(af, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ESOCKTNOSUPPORT) {
			return -1, fmt.Errorf("%w (socket: %v)", ErrSCTPUnsupported, err)
		}
		return -1, fmt.Errorf("socket: %w", err)
	}
	// Ask for SCTP_SNDRCV ancillary data on every receive: it carries the
	// PPID we check. Accepted sockets inherit it; setting it again is cheap.
	if err := sctp.NewSCTPConn(fd, nil).SubscribeEvents(sctp.SCTP_EVENT_DATA_IO); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("subscribe to SCTP data I/O events: %w", err)
	}
	// Same reason as TCP_NODELAY: small, latency-bound messages.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_SCTP, sctp.SCTP_NODELAY, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("set SCTP_NODELAY: %w", err)
	}
	return fd, nil
}

// Listen binds addr, which may list several local addresses for
// multi-homing ("10.0.0.1/10.0.1.1:3863").
func (s *SCTP) Listen(ctx context.Context, addr string) (Listener, error) {
	la, err := sctp.ResolveSCTPAddr("sctp", addr)
	if err != nil {
		return nil, fmt.Errorf("sctp listen %s on %s: %w", s.cfg.Protocol, addr, err)
	}
	wildcard := len(la.IPAddrs) == 0
	if wildcard {
		// No address (":3863"): listen on both families, as net.Listen does
		// for TCP, unless the host has no IPv6.
		la.IPAddrs = []net.IPAddr{{IP: net.IPv6zero}}
	}
	fd, err := sctpSocket(la)
	if wildcard && errors.Is(err, unix.EAFNOSUPPORT) {
		la.IPAddrs = []net.IPAddr{{IP: net.IPv4zero}}
		fd, err = sctpSocket(la)
	}
	if err != nil {
		return nil, fmt.Errorf("sctp listen %s on %s: %w", s.cfg.Protocol, addr, err)
	}
	fail := func(what string, err error) (Listener, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("sctp listen %s on %s: %s: %w", s.cfg.Protocol, addr, what, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("SO_REUSEADDR", err)
	}
	// Linux lets a socket bind to a listening SCTP socket's port only when
	// both have SO_REUSEPORT: SO_REUSEADDR never shares with a listener.
	if s.cfg.DialFromListener {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fail("SO_REUSEPORT", err)
		}
	}
	if wildcard && la.IPAddrs[0].IP.To4() == nil {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return fail("IPV6_V6ONLY", err)
		}
	}
	if err := sctp.SCTPBind(fd, la, sctp.SCTP_BINDX_ADD_ADDR); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		return fail("listen", err)
	}
	subscribe := func(fd int) error {
		return sctp.NewSCTPConn(fd, nil).SubscribeEvents(sctp.SCTP_EVENT_DATA_IO)
	}
	ln, err := newSCTPListener(s, fd, subscribe, true)
	if err != nil {
		return nil, fmt.Errorf("sctp listen %s on %s: %w", s.cfg.Protocol, addr, err)
	}
	if s.cfg.DialFromListener {
		if bound, ok := ln.addr.(*sctp.SCTPAddr); ok {
			s.local.CompareAndSwap(nil, &sctp.SCTPAddr{IPAddrs: la.IPAddrs, Port: bound.Port})
		}
	}
	return ln, nil
}

// newSCTPListener wraps a listening non-blocking socket. prepare (if set)
// runs on each accepted socket. Tests use it with an AF_UNIX SOCK_SEQPACKET
// socket to run the message path where the kernel has no SCTP.
func newSCTPListener(s *SCTP, fd int, prepare func(int) error, checkPPID bool) (*sctpListener, error) {
	f := os.NewFile(uintptr(fd), "sctp-listener")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &sctpListener{s: s, f: f, rc: rc, addr: sockAddr(fd, unix.Getsockname), prepare: prepare, checkPPID: checkPPID}, nil
}

type sctpListener struct {
	s         *SCTP
	f         *os.File
	rc        syscall.RawConn
	addr      net.Addr
	prepare   func(int) error
	checkPPID bool
	mu        sync.Mutex
	closed    atomic.Bool
}

func (l *sctpListener) Addr() net.Addr { return l.addr }

func (l *sctpListener) Close() error {
	l.closed.Store(true)
	return l.f.Close()
}

func (l *sctpListener) Accept(ctx context.Context) (Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	stop := watch(ctx, func() { _ = l.f.SetReadDeadline(time.Unix(1, 0)) })
	var nfd int
	var aerr error
	err := l.rc.Read(func(fd uintptr) bool {
		nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		return !errors.Is(aerr, unix.EAGAIN)
	})
	if stop() {
		_ = l.f.SetReadDeadline(time.Time{})
	}
	if err == nil {
		err = aerr
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if l.closed.Load() || errors.Is(err, os.ErrClosed) {
			err = net.ErrClosed
		}
		return nil, fmt.Errorf("sctp accept %s: %w", l.s.cfg.Protocol, err)
	}
	if l.prepare != nil {
		if err := l.prepare(nfd); err != nil {
			unix.Close(nfd)
			return nil, fmt.Errorf("sctp accept %s: subscribe to data I/O events: %w", l.s.cfg.Protocol, err)
		}
	}
	c, err := newSCTPConn(l.s, nfd, l.checkPPID)
	if err != nil {
		return nil, fmt.Errorf("sctp accept %s: %w", l.s.cfg.Protocol, err)
	}
	return c, nil
}

// Dial connects an association to addr ("ip:port", or "ip1/ip2:port" for a
// multi-homed peer).
func (s *SCTP) Dial(ctx context.Context, addr string) (Conn, error) {
	ra, err := sctp.ResolveSCTPAddr("sctp", addr)
	if err != nil {
		return nil, fmt.Errorf("sctp dial %s %s: %w", s.cfg.Protocol, addr, err)
	}
	fd, err := sctpSocket(ra)
	if err != nil {
		return nil, fmt.Errorf("sctp dial %s %s: %w", s.cfg.Protocol, addr, err)
	}
	if s.cfg.DialFromListener {
		if err := s.bindToListener(fd, ra); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("sctp dial %s %s: %w", s.cfg.Protocol, addr, err)
		}
	}
	if _, err := sctp.SCTPConnect(fd, ra); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		return nil, fmt.Errorf("sctp dial %s %s: %w", s.cfg.Protocol, addr, err)
	}
	c, err := newSCTPConn(s, fd, true)
	if err != nil {
		return nil, fmt.Errorf("sctp dial %s %s: %w", s.cfg.Protocol, addr, err)
	}
	// Wait for the association like net.Dialer waits for a TCP connect:
	// writable, then SO_ERROR says how it went.
	stop := watch(ctx, func() { _ = c.f.SetWriteDeadline(time.Unix(1, 0)) })
	if d, ok := ctx.Deadline(); ok {
		_ = c.f.SetWriteDeadline(d)
	}
	// Never wait blindly: the poller forgets readiness that arrived before
	// the wait began, so look at the socket first, then after each wake-up.
	// A one-to-one socket reports no peer until the association is up.
	var soerr error
	err = c.rc.Write(func(fd uintptr) bool {
		v, gerr := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if gerr != nil {
			soerr = gerr
			return true
		}
		switch e := syscall.Errno(v); e {
		case 0, unix.EISCONN:
		case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
			return false
		default:
			soerr = e
			return true
		}
		_, perr := unix.Getpeername(int(fd))
		return perr == nil
	})
	stop()
	_ = c.f.SetWriteDeadline(time.Time{})
	if err == nil {
		err = soerr
	}
	if err != nil {
		c.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("sctp dial %s %s: %w", s.cfg.Protocol, addr, err)
	}
	c.laddr, c.raddr = connAddrs(fd)
	return c, nil
}

// connAddrs returns a connected socket's local and remote addresses, never
// a nil net.Addr: an association the peer aborted before we asked has no
// peer name any more, and callers print and parse these unconditionally.
func connAddrs(fd int) (local, remote net.Addr) {
	local, remote = sockAddr(fd, unix.Getsockname), sockAddr(fd, unix.Getpeername)
	if local == nil {
		local = &sctp.SCTPAddr{}
	}
	if remote == nil {
		remote = &sctp.SCTPAddr{}
	}
	return local, remote
}

// bindToListener binds a socket about to dial ra to the listener's address
// and port. The socket's family follows ra (sctpSocket), so a listener's
// addresses of the other family are left out; a wildcard listener gives
// the wildcard of the socket's family.
func (s *SCTP) bindToListener(fd int, ra *sctp.SCTPAddr) error {
	local := s.local.Load()
	if local == nil {
		return errors.New("no listener to dial from yet (DialFromListener)")
	}
	v6 := false
	for _, ip := range ra.IPAddrs {
		if ip.IP.To4() == nil {
			v6 = true
		}
	}
	la := &sctp.SCTPAddr{Port: local.Port}
	for _, ip := range local.IPAddrs {
		switch {
		case v6:
			la.IPAddrs = append(la.IPAddrs, ip)
		case ip.IP.To4() != nil:
			la.IPAddrs = append(la.IPAddrs, ip)
		case ip.IP.IsUnspecified():
			la.IPAddrs = append(la.IPAddrs, net.IPAddr{IP: net.IPv4zero})
		}
	}
	if len(la.IPAddrs) == 0 {
		return fmt.Errorf("listener %v has no address of the peer's family", local)
	}
	for _, opt := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 1); err != nil {
			return fmt.Errorf("socket option %d: %w", opt, err)
		}
	}
	if err := sctp.SCTPBind(fd, la, sctp.SCTP_BINDX_ADD_ADDR); err != nil {
		return fmt.Errorf("bind to the listener's %v: %w", la, err)
	}
	return nil
}

// sctpConn is one one-to-one style SCTP socket. The kernel keeps message
// boundaries, so framing is the association's; the header length is only
// checked against the message size.
type sctpConn struct {
	s         *SCTP
	f         *os.File
	rc        syscall.RawConn
	sndCmsg   []byte // SCTP_SNDRCV ancillary data carrying our PPID, built once
	checkPPID bool
	buf       []byte
	oob       []byte
	laddr     net.Addr
	raddr     net.Addr
	rw, ww    *watcher
	// The raw-I/O callbacks and their results live in the conn, so the
	// per-message path does not allocate closures.
	rd, wr          ioResult
	readFn, writeFn func(fd uintptr) bool
	// peekFn looks for a queued message without taking it (MessageBuffered).
	peekFn  func(fd uintptr)
	peekBuf [1]byte
	peekErr error
	// ra takes every queued message with one recvmmsg, nil where the
	// socket cannot split a message over entries (SOCK_SEQPACKET
	// truncates instead) or the buffer is too small to split; raFn
	// fills it for ReadMessage, probeFn for MessageBuffered.
	ra      *readAhead
	raFn    func(fd uintptr) bool
	probeFn func(fd uintptr)
	// wb sends a run of MSG_MORE messages with one sendmmsg
	// (WriteMessages); wmu is held.
	wb     *writeBatch
	wbFn   func(fd uintptr) bool
	wmu    sync.Mutex
	closed atomic.Bool
}

// sndRcvInfoLen is sizeof(struct sctp_sndrcvinfo); the PPID sits at offset 8
// in network byte order.
const sndRcvInfoLen = 32

// newSCTPConn wraps a connected non-blocking SEQPACKET-like socket. Tests
// use it on an AF_UNIX SOCK_SEQPACKET pair (checkPPID false) to exercise the
// message path where the kernel has no SCTP.
func newSCTPConn(s *SCTP, fd int, checkPPID bool) (*sctpConn, error) {
	f := os.NewFile(uintptr(fd), "sctp")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	c := &sctpConn{
		s: s, f: f, rc: rc, sndCmsg: sndrcvCmsg(s.cfg.Protocol.PPID()), checkPPID: checkPPID,
		// One byte more than the maximum, so an oversized message shows.
		buf: make([]byte, s.cfg.MaxMessageSize+1),
		oob: make([]byte, unix.CmsgSpace(sndRcvInfoLen)),
	}
	c.laddr, c.raddr = connAddrs(fd)
	c.rw = newWatcher(func() { _ = c.f.SetReadDeadline(time.Unix(1, 0)) })
	c.ww = newWatcher(func() { _ = c.f.SetWriteDeadline(time.Unix(1, 0)) })
	c.readFn = func(fd uintptr) bool {
		c.rd.n, c.rd.oobn, c.rd.flags, c.rd.err = recvmsg(int(fd), c.rd.p, c.oob, 0)
		return !errors.Is(c.rd.err, unix.EAGAIN)
	}
	c.writeFn = func(fd uintptr) bool {
		c.wr.n, c.wr.err = unix.SendmsgN(int(fd), c.wr.p, c.sndCmsg, nil, c.wr.flags)
		return !errors.Is(c.wr.err, unix.EAGAIN)
	}
	c.peekFn = func(fd uintptr) {
		_, _, _, c.peekErr = recvmsg(int(fd), c.peekBuf[:], nil, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	}
	if checkPPID {
		c.ra = newReadAhead(c.buf, len(c.oob))
	}
	if c.ra != nil {
		c.raFn = func(fd uintptr) bool {
			c.rd.err = c.ra.fill(int(fd), len(c.oob))
			return !errors.Is(c.rd.err, unix.EAGAIN)
		}
		c.probeFn = func(fd uintptr) {
			c.peekErr = c.ra.fill(int(fd), len(c.oob))
		}
	}
	c.wbFn = func(fd uintptr) bool { return c.wb.send(int(fd), unix.MSG_MORE) }
	return c, nil
}

// ioResult carries one raw read or write: its buffer in, its outcome out.
type ioResult struct {
	p              []byte
	n, oobn, flags int // flags: in for a write (MSG_MORE), out of a read
	err            error
}

func (c *sctpConn) LocalAddr() net.Addr  { return c.laddr }
func (c *sctpConn) RemoteAddr() net.Addr { return c.raddr }
func (c *sctpConn) Peer() Identity       { return Identity{} }

func (c *sctpConn) Close() error {
	c.closed.Store(true)
	err := c.f.Close()
	c.rw.close()
	c.ww.close()
	return err
}

func (c *sctpConn) fail(fe *FrameError) error {
	fe.Remote = c.raddr
	closeLogged(c.s.cfg.Logger, c.s.cfg.Protocol, "sctp", c, fe)
	return fe
}

func (c *sctpConn) ReadMessage(ctx context.Context) ([]byte, error) {
	cfg := &c.s.cfg
	if c.ra.pending() {
		// Already read: no system call, no deadline to set. A closed
		// connection (Close, or a framing failure) hands out nothing more.
		if c.closed.Load() {
			return nil, fmt.Errorf("read %s message: %w", cfg.Protocol, net.ErrClosed)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return c.readAheadMessage(ctx)
	}
	c.rw.arm(ctx)
	if err := c.f.SetReadDeadline(readDeadline(ctx, cfg.IdleTimeout)); err != nil {
		return nil, fmt.Errorf("read %s message: %w", cfg.Protocol, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.ra == nil {
		return c.readOne(ctx, 0, 0, false)
	}
	err := c.ra.err
	c.ra.err = nil
	if err == nil {
		err = c.rc.Read(c.raFn)
		if err == nil {
			err = c.rd.err
		}
	}
	if err != nil {
		return nil, c.readFailed(ctx, err, 0)
	}
	return c.readAheadMessage(ctx)
}

// readAheadMessage hands out the next message recvmmsg took, reading the
// rest of one whose end had not arrived.
func (c *sctpConn) readAheadMessage(ctx context.Context) ([]byte, error) {
	cfg := &c.s.cfg
	g, ok := c.ra.nextMessage(c.buf, len(c.oob), cfg.MaxMessageSize)
	switch {
	case !ok: // only notifications
		return c.ReadMessage(ctx)
	case g.eof:
		return nil, io.EOF
	case g.n > cfg.MaxMessageSize:
		return nil, c.fail(&FrameError{Err: ErrOversized, Length: g.n, Cause: fmt.Errorf("maximum %d", cfg.MaxMessageSize)})
	case !g.complete:
		// The rest is waited for: tied to ctx as every blocking read is
		// (arming also waits out an earlier context's interrupt, which
		// would otherwise land on this deadline).
		c.rw.arm(ctx)
		if err := c.f.SetReadDeadline(deadlineFor(ctx, time.Now(), cfg.FrameTimeout)); err != nil {
			return nil, fmt.Errorf("read %s message: %w", cfg.Protocol, err)
		}
		return c.readOne(ctx, g.n, g.ppid, g.havePPID)
	}
	// Capped: the buffer after it holds the messages still to hand out,
	// which an append to the returned slice must not overwrite.
	return c.checkMessage(c.buf[g.off:g.off+g.n:g.off+g.n], g.ppid, g.havePPID)
}

// readFailed turns a failed read (n bytes of a message read so far) into
// ReadMessage's error, closing the connection where the contract says so.
func (c *sctpConn) readFailed(ctx context.Context, err error, n int) error {
	cfg := &c.s.cfg
	switch {
	case isTimeout(err):
		if cerr := ctxExpired(ctx); cerr != nil {
			if n > 0 {
				_ = c.Close()
			}
			return cerr
		}
		if n > 0 {
			return c.fail(&FrameError{Err: ErrStalled, Got: n, Cause: fmt.Errorf("frame timeout %v", cfg.FrameTimeout)})
		}
		return c.fail(&FrameError{Err: ErrIdle, Cause: fmt.Errorf("nothing received for %v", cfg.IdleTimeout)})
	case c.closed.Load() || errors.Is(err, os.ErrClosed):
		return fmt.Errorf("read %s message: %w", cfg.Protocol, net.ErrClosed)
	}
	_ = c.Close()
	return fmt.Errorf("read %s message from %v: %w", cfg.Protocol, c.raddr, err)
}

// readOne reads a message with one recvmsg per part into c.buf after the
// n bytes (and the PPID) of it already there.
func (c *sctpConn) readOne(ctx context.Context, n int, ppid uint32, havePPID bool) ([]byte, error) {
	cfg := &c.s.cfg
	for {
		c.rd.p = c.buf[n:]
		err := c.rc.Read(c.readFn)
		got, oobn, flags := c.rd.n, c.rd.oobn, c.rd.flags
		if err == nil {
			err = c.rd.err
		}
		if err != nil {
			return nil, c.readFailed(ctx, err, n)
		}
		if flags&sctp.MSG_NOTIFICATION != 0 {
			continue // not subscribed to any, but never mistake one for data
		}
		if got == 0 && oobn == 0 {
			if n > 0 {
				return nil, c.fail(&FrameError{Err: ErrTruncated, Got: n})
			}
			return nil, io.EOF
		}
		if p, ok := ppidOf(c.oob[:oobn]); ok {
			ppid, havePPID = p, true
		}
		n += got
		if flags&unix.MSG_TRUNC != 0 || n > cfg.MaxMessageSize {
			return nil, c.fail(&FrameError{Err: ErrOversized, Length: n, Cause: fmt.Errorf("maximum %d", cfg.MaxMessageSize)})
		}
		if !c.checkPPID || flags&unix.MSG_EOR != 0 {
			break
		}
		// Partial delivery of a large message: the rest must follow within
		// the frame timeout, as on TCP.
		if err := c.f.SetReadDeadline(deadlineFor(ctx, time.Now(), cfg.FrameTimeout)); err != nil {
			return nil, fmt.Errorf("read %s message: %w", cfg.Protocol, err)
		}
	}
	return c.checkMessage(c.buf[:n], ppid, havePPID)
}

// checkMessage checks a whole message's PPID and header length.
func (c *sctpConn) checkMessage(msg []byte, ppid uint32, havePPID bool) ([]byte, error) {
	cfg := &c.s.cfg
	n := len(msg)
	if c.checkPPID && havePPID && ppid != cfg.Protocol.PPID() {
		return nil, c.fail(&FrameError{Err: ErrWrongPPID, Length: n, Got: int(ppid)})
	}
	if n < HeaderLen {
		return nil, c.fail(&FrameError{Err: ErrBadLength, Length: n})
	}
	length := int(binary.BigEndian.Uint16(msg[2:4]))
	switch {
	case length < HeaderLen:
		return nil, c.fail(&FrameError{Err: ErrBadLength, Length: length})
	case length != n:
		return nil, c.fail(&FrameError{Err: ErrLengthMismatch, Length: length, Got: n})
	}
	return msg, nil
}

// ppidOf finds the PPID in SCTP_SNDRCV ancillary data (without allocating:
// this runs for every message).
func ppidOf(oob []byte) (uint32, bool) {
	for len(oob) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0, false
		}
		if h.Level == unix.IPPROTO_SCTP && h.Type == sctp.SCTP_CMSG_SNDRCV && len(data) >= 12 {
			return binary.BigEndian.Uint32(data[8:12]), true
		}
		oob = rest
	}
	return 0, false
}

// sndrcvCmsg builds the ancillary data that sets ppid on a send: a
// struct sctp_sndrcvinfo (layout as sctp.SndRcvInfo) whose PPID field
// holds the number in network byte order, as the wire carries it.
func sndrcvCmsg(ppid uint32) []byte {
	b := make([]byte, unix.CmsgSpace(sndRcvInfoLen))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.IPPROTO_SCTP
	h.Type = sctp.SCTP_CMSG_SNDRCV
	h.SetLen(unix.CmsgLen(sndRcvInfoLen))
	binary.BigEndian.PutUint32(b[unix.CmsgLen(0)+8:], ppid)
	return b
}

// recvmsg is unix.Recvmsg without the source address, which a connected
// socket does not need and which would cost an allocation per message.
func recvmsg(fd int, p, oob []byte, how int) (n, oobn, flags int, err error) {
	iov := unix.Iovec{Base: &p[0]}
	iov.SetLen(len(p))
	msg := unix.Msghdr{Iov: &iov, Iovlen: 1}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	r, _, errno := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), uintptr(how))
	if errno != 0 {
		return 0, 0, 0, errno
	}
	return int(r), int(msg.Controllen), int(msg.Flags), nil
}

// MessageBuffered implements Pending with one non-blocking peek
// (MSG_PEEK|MSG_DONTWAIT) at the receive queue: a message, the peer's
// shutdown or an error is there for the next ReadMessage to return at once.
// It is a system call, unlike the stream transports' check; a server calls
// it only after a message it answered, to bundle that answer with the next
// ones (WriteMessages).
//
// The peek goes through Control, not Read: Read refuses to start once the
// read deadline has passed, which is the state an interrupted read (its
// context ended) leaves behind, and a "yes" then would hold answers back
// while the next ReadMessage waits.
//
// With read-ahead, messages recvmmsg already took answer "yes" without a
// system call, and once they are used up the look is itself a
// non-blocking recvmmsg: what it finds is what the next ReadMessage
// returns, so the call a peek would cost is not paid again there.
func (c *sctpConn) MessageBuffered() bool {
	if c.ra.pending() || (c.ra != nil && c.ra.err != nil) {
		return true
	}
	c.peekErr = nil
	fn := c.peekFn
	if c.ra != nil {
		fn = c.probeFn
	}
	if err := c.rc.Control(fn); err != nil {
		return true // closed: ReadMessage says so
	}
	switch {
	case errors.Is(c.peekErr, unix.EAGAIN):
		return false
	case c.ra != nil && c.peekErr != nil:
		c.ra.err = c.peekErr // for ReadMessage to report
	}
	return true
}

// corkLimit bounds the bytes WriteMessages holds back with MSG_MORE: corked
// data is not sent until a send without it, so a batch that filled the send
// buffer while corked would wait for acknowledgements that cannot come.
const corkLimit = 32 << 10

// WriteMessages implements BatchWriter: each message but the last (and any
// that reaches corkLimit) is sent with MSG_MORE, which corks the
// association (Linux 4.15 and later), so the kernel bundles their DATA
// chunks into as few packets as fit instead of sending a packet per message
// — and the peer receives, acknowledges and wakes up for one. Each message
// keeps its own boundary and PPID. On an older kernel MSG_MORE is ignored
// and the messages leave one by one, as WriteMessage sends them.
func (c *sctpConn) WriteMessages(ctx context.Context, msgs [][]byte) error {
	for _, m := range msgs {
		if err := checkOutgoing(m, MaxMessageSize); err != nil {
			return err
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.prepareWrite(ctx); err != nil {
		return err
	}
	// Messages sent with MSG_MORE go in runs, one sendmmsg per run; the
	// message that ends a run (the batch's last, or the one that reaches
	// corkLimit) goes alone without it, which uncorks.
	corked, run := 0, 0
	for i, m := range msgs {
		if corked += len(m); i < len(msgs)-1 && corked < corkLimit {
			if run++; run < writeBatchEntries {
				continue
			}
			if err := c.writeRun(ctx, msgs[i+1-run:i+1]); err != nil {
				return err
			}
			run = 0
			continue
		}
		if err := c.writeRun(ctx, msgs[i-run:i]); err != nil {
			return err
		}
		corked, run = 0, 0
		if err := c.writeLocked(ctx, m, 0); err != nil {
			return err
		}
	}
	return nil
}

// writeRun sends msgs with MSG_MORE: one sendmmsg (a plain send for one
// message); wmu is held and prepareWrite done.
func (c *sctpConn) writeRun(ctx context.Context, msgs [][]byte) error {
	switch len(msgs) {
	case 0:
		return nil
	case 1:
		return c.writeLocked(ctx, msgs[0], unix.MSG_MORE)
	}
	if c.wb == nil {
		c.wb = newWriteBatch(c.sndCmsg) // only connections that send batches
	}
	c.wb.set(msgs)
	err := c.rc.Write(c.wbFn)
	if err == nil {
		err = c.wb.err
	}
	c.wb.clear()
	return c.writeFailed(ctx, err)
}

// prepareWrite arms the write interrupt for ctx and sets the deadline; wmu
// is held.
func (c *sctpConn) prepareWrite(ctx context.Context) error {
	cfg := &c.s.cfg
	// Armed before the deadline is set: arming waits out an interrupt
	// of an earlier, ended context, which would otherwise land after it.
	c.ww.arm(ctx)
	if err := c.f.SetWriteDeadline(deadlineFor(ctx, time.Now(), cfg.WriteTimeout)); err != nil {
		return fmt.Errorf("write %s message to %v: %w", cfg.Protocol, c.raddr, err)
	}
	return ctx.Err()
}

func (c *sctpConn) WriteMessage(ctx context.Context, msg []byte) error {
	if err := checkOutgoing(msg, MaxMessageSize); err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.prepareWrite(ctx); err != nil {
		return err
	}
	return c.writeLocked(ctx, msg, 0)
}

// writeLocked sends one message with the send flags how; wmu is held and
// prepareWrite done.
func (c *sctpConn) writeLocked(ctx context.Context, msg []byte, how int) error {
	c.wr.p, c.wr.flags = msg, how
	err := c.rc.Write(c.writeFn)
	c.wr.p = nil
	if err == nil {
		err = c.wr.err
	}
	return c.writeFailed(ctx, err)
}

// writeFailed wraps a failed send's error (nil: nil).
func (c *sctpConn) writeFailed(ctx context.Context, err error) error {
	cfg := &c.s.cfg
	if err != nil {
		// SCTP sends whole messages, so the association stays in step; a
		// timeout or cancellation leaves it usable.
		if cerr := ctxExpired(ctx); cerr != nil {
			return fmt.Errorf("write %s message to %v: %w", cfg.Protocol, c.raddr, cerr)
		}
		if c.closed.Load() || errors.Is(err, os.ErrClosed) {
			err = net.ErrClosed
		}
		return fmt.Errorf("write %s message to %v: %w", cfg.Protocol, c.raddr, err)
	}
	return nil
}

// sockAddr turns getsockname/getpeername into a net.Addr (an *sctp.SCTPAddr
// for IP sockets), or nil.
func sockAddr(fd int, get func(int) (unix.Sockaddr, error)) net.Addr {
	sa, err := get(fd)
	if err != nil {
		return nil
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &sctp.SCTPAddr{IPAddrs: []net.IPAddr{{IP: net.IP(a.Addr[:]).To16()}}, Port: a.Port}
	case *unix.SockaddrInet6:
		ip := net.IPAddr{IP: net.IP(a.Addr[:])}
		if a.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(a.ZoneId)); err == nil {
				ip.Zone = ifi.Name
			}
		}
		return &sctp.SCTPAddr{IPAddrs: []net.IPAddr{ip}, Port: a.Port}
	case *unix.SockaddrUnix:
		return &net.UnixAddr{Name: a.Name, Net: "unixpacket"}
	}
	return nil
}
