package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/ishidawataru/sctp"
	"golang.org/x/sys/unix"
)

// PE-PU sessions over SCTP.
//
// A pool user's session with a pool element is one SCTP association that
// carries both the application's data and the ASAP session layer (Cookie,
// Cookie Echo, Business Card), told apart by the payload protocol
// identifier: ASAP on PPID 11, data on any other (rsplib sends it with 0 or
// the application's own). This is how rsplib's rspserver and rspterminal
// talk, so a pool can hold PEs of both implementations.
//
// Unlike Conn, a SessionConn carries messages of any size and content: data
// messages have no RSerPool header. It is a net.Conn (Read and Write move
// data, skipping control messages) with ReadMsg and WriteMsg for the
// session layer, and deadlines instead of contexts, as net.Conn has.

// PPIDSessionData is the PPID of a session's application data that
// rspxdp sends (rsplib's rsp_write sends 0 too).
const PPIDSessionData uint32 = 0

// maxSessionMessage bounds one read of a session message; a longer data
// message arrives in several reads (the kernel's partial delivery), which
// is fine for a byte stream. ASAP control messages are at most
// MaxMessageSize.
const maxSessionMessage = MaxMessageSize

// SessionListener accepts SCTP associations that carry PE-PU sessions. It
// is a net.Listener whose Accept returns *SessionConn.
type SessionListener struct {
	l *sctpListener
}

// ListenSession listens for sessions on addr ("ip:port", or
// "ip1/ip2:port" for a multi-homed PE). It fails with an error wrapping
// ErrSCTPUnsupported where the kernel has no SCTP.
func ListenSession(ctx context.Context, addr string) (*SessionListener, error) {
	s, err := NewSCTP(Config{Protocol: ASAP})
	if err != nil {
		return nil, fmt.Errorf("sctp session listener: %w", err)
	}
	ln, err := s.Listen(ctx, addr)
	if err != nil {
		return nil, err
	}
	return &SessionListener{l: ln.(*sctpListener)}, nil
}

// Accept waits for the next association.
func (l *SessionListener) Accept() (net.Conn, error) { return l.AcceptSession(context.Background()) }

// AcceptSession waits for the next association until ctx ends.
func (l *SessionListener) AcceptSession(ctx context.Context) (*SessionConn, error) {
	c, err := l.l.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return newSessionConn(c.(*sctpConn)), nil
}

// Close stops listening; associations already accepted stay up.
func (l *SessionListener) Close() error { return l.l.Close() }

// Addr returns the bound address, an *sctp.SCTPAddr with every local
// address of the listener.
func (l *SessionListener) Addr() net.Addr { return l.l.Addr() }

// DialSession opens a session association to addr ("ip:port", or
// "ip1/ip2:port" for a multi-homed PE).
func DialSession(ctx context.Context, addr string) (*SessionConn, error) {
	s, err := NewSCTP(Config{Protocol: ASAP})
	if err != nil {
		return nil, fmt.Errorf("sctp session to %s: %w", addr, err)
	}
	c, err := s.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return newSessionConn(c.(*sctpConn)), nil
}

// SessionConn is one session association (see SessionListener).
type SessionConn struct {
	c    *sctpConn
	data []byte // SCTP_SNDRCV ancillary data for PPIDSessionData
	asap []byte // and for PPIDASAP

	rmu  sync.Mutex
	oob  []byte
	rbuf []byte // Read's buffer
	rest []byte // unread part of the data message Read returned from
	wmu  sync.Mutex
}

func newSessionConn(c *sctpConn) *SessionConn {
	return &SessionConn{c: c, data: sndrcvCmsg(PPIDSessionData), asap: sndrcvCmsg(PPIDASAP),
		oob: make([]byte, unix.CmsgSpace(sndRcvInfoLen))}
}

// ReadMsg reads the next message, or the next part of one the kernel
// delivers in parts: n bytes into p, the message's PPID, and whether this
// part ends the message (eor). It returns io.EOF when the peer shut the
// association down, and the error of the association's end otherwise (an
// ABORT shows as ECONNRESET).
func (s *SessionConn) ReadMsg(p []byte) (n int, ppid uint32, eor bool, err error) {
	if len(p) == 0 {
		return 0, 0, false, errors.New("read session message: empty buffer")
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for {
		var got, oobn, flags int
		var rerr error
		err := s.c.rc.Read(func(fd uintptr) bool {
			got, oobn, flags, rerr = recvmsg(int(fd), p, s.oob, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			if s.c.closed.Load() || errors.Is(err, os.ErrClosed) {
				err = net.ErrClosed
			}
			return 0, 0, false, fmt.Errorf("read session message from %v: %w", s.c.raddr, err)
		}
		if flags&sctp.MSG_NOTIFICATION != 0 {
			continue // none subscribed; never mistake one for data
		}
		if got == 0 && oobn == 0 {
			return 0, 0, false, io.EOF
		}
		ppid, _ = ppidOf(s.oob[:oobn])
		return got, ppid, flags&unix.MSG_EOR != 0, nil
	}
}

// WriteMsg sends p as one message with PPID ppid. The ancillary data of
// PPIDSessionData and PPIDASAP is built once; any other PPID's per call.
func (s *SessionConn) WriteMsg(p []byte, ppid uint32) error {
	cmsg := s.data
	switch ppid {
	case PPIDSessionData:
	case PPIDASAP:
		cmsg = s.asap
	default:
		cmsg = sndrcvCmsg(ppid)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var werr error
	err := s.c.rc.Write(func(fd uintptr) bool {
		_, werr = unix.SendmsgN(int(fd), p, cmsg, nil, 0)
		return !errors.Is(werr, unix.EAGAIN)
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		if s.c.closed.Load() || errors.Is(err, os.ErrClosed) {
			err = net.ErrClosed
		}
		return fmt.Errorf("write session message to %v: %w", s.c.raddr, err)
	}
	return nil
}

// Read reads application data, skipping ASAP control messages (a caller
// that needs those uses ReadMsg).
func (s *SessionConn) Read(p []byte) (int, error) {
	for len(s.rest) == 0 {
		if s.rbuf == nil {
			s.rbuf = make([]byte, maxSessionMessage)
		}
		n, ppid, _, err := s.ReadMsg(s.rbuf)
		if err != nil {
			return 0, err
		}
		if ppid != PPIDASAP {
			s.rest = s.rbuf[:n]
		}
	}
	n := copy(p, s.rest)
	s.rest = s.rest[n:]
	return n, nil
}

// Write sends p as one data message.
func (s *SessionConn) Write(p []byte) (int, error) {
	if err := s.WriteMsg(p, PPIDSessionData); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close shuts the association down (SCTP SHUTDOWN, not ABORT).
func (s *SessionConn) Close() error { return s.c.Close() }

// LocalAddr returns the local address (an *sctp.SCTPAddr).
func (s *SessionConn) LocalAddr() net.Addr { return s.c.laddr }

// RemoteAddr returns the peer's primary address (an *sctp.SCTPAddr).
func (s *SessionConn) RemoteAddr() net.Addr { return s.c.raddr }

// SetDeadline sets the read and write deadlines.
func (s *SessionConn) SetDeadline(t time.Time) error { return s.c.f.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (s *SessionConn) SetReadDeadline(t time.Time) error { return s.c.f.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (s *SessionConn) SetWriteDeadline(t time.Time) error { return s.c.f.SetWriteDeadline(t) }
