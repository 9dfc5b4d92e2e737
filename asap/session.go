package asap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/transport"
	"github.com/rspxdp/rspxdp/wire"
)

// frameData is the type byte of an application data frame on the session
// channel (see the package documentation).
const frameData = 0x00

// maxFrameData is the most application bytes one data frame carries.
const maxFrameData = wire.DefaultMaxMessageSize - 4

// Session is one PE-PU connection carrying the session layer: application
// bytes (Read, Write) multiplexed with ASAP Cookie, Cookie Echo and Business
// Card messages. It implements net.Conn.
type Session struct {
	conn net.Conn
	rd   *bufio.Reader
	wmu  sync.Mutex
	rmu  sync.Mutex
	buf  []byte // unread part of the current data frame

	mu           sync.Mutex
	cookie       []byte          // last Cookie received (PU side)
	cookieEcho   []byte          // Cookie Echo received (PE side)
	businessCard string          // pool handle named by the last Business Card
	cardPEs      []PEInfo        // and the PEs it named to fail over to
	self         msg.PoolElement // PE side: the PE, for a Business Card naming no PE
	onControl    func(*wire.Message)

	closeOnce sync.Once
	onClose   func()

	// unaware: the user speaks no session layer (it reached this PE
	// through the XDP data plane's VIP), so bytes pass through unframed.
	unaware bool

	// sctp, when set, is the session's SCTP association: data and
	// control are messages told apart by PPID instead of frames.
	sctp *transport.SessionConn
	mbuf []byte // its read buffer
}

// ErrUnawareSession is returned by the session-layer calls (SendCookie,
// SendBusinessCard) on a session with an RSerPool-unaware user, which could
// not tell them from application data.
var ErrUnawareSession = errors.New("the pool user is RSerPool-unaware: no session layer")

func newSession(c net.Conn) *Session {
	if sc, ok := c.(*transport.SessionConn); ok {
		return &Session{conn: c, sctp: sc}
	}
	return &Session{conn: c, rd: bufio.NewReaderSize(c, 64<<10)}
}

// Read reads application bytes. ASAP messages arriving in between are
// consumed and recorded (Cookie, CookieEcho, BusinessCard).
func (s *Session) Read(p []byte) (int, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if s.unaware {
		return s.rd.Read(p)
	}
	for len(s.buf) == 0 {
		if err := s.readFrame(); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

// readFrame reads one frame; data goes to s.buf, control is recorded.
func (s *Session) readFrame() error {
	if s.sctp != nil {
		return s.readMessage()
	}
	var h [4]byte
	if _, err := io.ReadFull(s.rd, h[:]); err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint16(h[2:]))
	if n < 4 {
		s.conn.Close()
		return fmt.Errorf("session frame length %d below header size", n)
	}
	b := make([]byte, n)
	copy(b, h[:])
	if _, err := io.ReadFull(s.rd, b[4:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if h[0] == frameData {
		s.buf = b[4:]
		return nil
	}
	return s.control(b)
}

// readMessage reads one message of an SCTP session: data (any PPID but
// ASAP's) goes to s.buf, an ASAP message (PPID 11) is recorded.
func (s *Session) readMessage() error {
	if s.mbuf == nil {
		s.mbuf = make([]byte, wire.DefaultMaxMessageSize)
	}
	n, ppid, eor, err := s.sctp.ReadMsg(s.mbuf)
	if err != nil {
		return err
	}
	if ppid != transport.PPIDASAP {
		s.buf = append([]byte(nil), s.mbuf[:n]...)
		return nil
	}
	b := append([]byte(nil), s.mbuf[:n]...)
	for !eor {
		// The kernel delivers a large message in parts.
		if n, _, eor, err = s.sctp.ReadMsg(s.mbuf); err != nil {
			return err
		}
		if len(b)+n > wire.DefaultMaxMessageSize {
			s.conn.Close()
			return fmt.Errorf("session control message over %d bytes", wire.DefaultMaxMessageSize)
		}
		b = append(b, s.mbuf[:n]...)
	}
	return s.control(b)
}

// control records the ASAP message b of the session layer.
func (s *Session) control(b []byte) error {
	m, err := wire.Decode(wire.ASAP, b)
	if err != nil {
		// An undecodable control message cannot be skipped safely: the
		// peer does not speak this session layer.
		s.conn.Close()
		return fmt.Errorf("session control message: %w", err)
	}
	s.mu.Lock()
	switch m.Type {
	case wire.ASAPCookie:
		if p := m.Param(wire.ParamCookie); p != nil {
			s.cookie = append([]byte(nil), p.Cookie...)
		}
	case wire.ASAPCookieEcho:
		if p := m.Param(wire.ParamCookie); p != nil {
			s.cookieEcho = append([]byte(nil), p.Cookie...)
		}
	case wire.ASAPBusinessCard:
		s.businessCard = string(m.PoolHandle())
		s.cardPEs = nil
		if c, err := msg.FromWire(m); err == nil {
			for _, pe := range c.(msg.BusinessCard).PEs {
				s.cardPEs = append(s.cardPEs, peInfo(pe))
			}
		}
	}
	f := s.onControl
	s.mu.Unlock()
	if f != nil {
		f(m)
	}
	return nil
}

// Write writes application bytes as data frames.
func (s *Session) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.unaware {
		return s.conn.Write(p)
	}
	if s.sctp != nil {
		// A message per write, as rsplib's rsp_write sends one (SCTP
		// has no empty message).
		done := 0
		for done < len(p) || len(p) == 0 {
			chunk := p[done:min(len(p), done+maxFrameData)]
			if len(chunk) == 0 {
				break
			}
			if err := s.sctp.WriteMsg(chunk, transport.PPIDSessionData); err != nil {
				return done, err
			}
			done += len(chunk)
		}
		return done, nil
	}
	done := 0
	frame := make([]byte, 0, 4+min(len(p), maxFrameData))
	for done < len(p) || len(p) == 0 {
		chunk := p[done:min(len(p), done+maxFrameData)]
		frame = frame[:4]
		frame[0], frame[1] = frameData, 0
		binary.BigEndian.PutUint16(frame[2:], uint16(4+len(chunk)))
		frame = append(frame, chunk...)
		if _, err := s.conn.Write(frame); err != nil {
			return done, err
		}
		done += len(chunk)
		if len(p) == 0 {
			break
		}
	}
	return done, nil
}

func (s *Session) writeControl(m *wire.Message) error {
	if s.unaware {
		return ErrUnawareSession
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.sctp != nil {
		return s.sctp.WriteMsg(b, transport.PPIDASAP)
	}
	_, err = s.conn.Write(b)
	return err
}

// SendCookie sends an ASAP Cookie: state the pool user keeps and echoes to
// the PE it fails over to (PE side). A cookie whose length is not a
// multiple of 4 is padded with zero bytes, which the echo then carries too:
// rsplib's parser refuses a Cookie parameter of another length.
func (s *Session) SendCookie(cookie []byte) error {
	if r := len(cookie) % 4; r != 0 {
		cookie = append(cookie[:len(cookie):len(cookie)], make([]byte, 4-r)...)
	}
	if err := s.writeControl(&wire.Message{Protocol: wire.ASAP, Type: wire.ASAPCookie,
		Params: []wire.Param{wire.CookieParam(cookie)}}); err != nil {
		return fmt.Errorf("send cookie: %w", err)
	}
	return nil
}

// sendCookieEcho sends the cookie of the previous PE (PU side).
func (s *Session) sendCookieEcho(cookie []byte) error {
	return s.writeControl(&wire.Message{Protocol: wire.ASAP, Type: wire.ASAPCookieEcho,
		Params: []wire.Param{wire.CookieParam(cookie)}})
}

// SendBusinessCard names the pool the pool user should fail over to and
// the PEs it should try first (PE side; RFC 5352, 2.2.12): after a failure
// the PU tries those PEs, then resolves handle instead of the pool it
// dialled. Without failover PEs the card names this PE, as rsplib's
// parser wants at least one.
func (s *Session) SendBusinessCard(handle string, failover ...PEInfo) error {
	card := msg.BusinessCard{Handle: handle}
	for _, p := range failover {
		card.PEs = append(card.PEs, p.element())
	}
	if len(card.PEs) == 0 && s.self.ID != 0 {
		card.PEs = []msg.PoolElement{s.self}
	}
	b, err := msg.Encode(card)
	if err == nil {
		var w wire.Message
		if err = (&wire.Decoder{}).Decode(wire.ASAP, b, &w); err == nil {
			err = s.writeControl(&w)
		}
	}
	if err != nil {
		return fmt.Errorf("send business card: %w", err)
	}
	return nil
}

// CookieEcho returns the cookie a pool user echoed after failing over to
// this PE, or nil. A PU sends it before any data, so it is set once the
// first Read has returned.
func (s *Session) CookieEcho() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cookieEcho
}

// WaitCookieEcho reads frames until a Cookie Echo or the first application
// data arrives, and returns the echoed cookie (nil for a pool user that did
// not fail over to this PE). It lets a PE restore the user's state before
// reading any request; data read meanwhile is kept for Read.
func (s *Session) WaitCookieEcho() ([]byte, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for len(s.buf) == 0 {
		if c := s.CookieEcho(); c != nil {
			return c, nil
		}
		if err := s.readFrame(); err != nil {
			return nil, err
		}
	}
	return s.CookieEcho(), nil
}

func (s *Session) lastCookie() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cookie
}

func (s *Session) lastBusinessCard() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.businessCard
}

func (s *Session) lastCardPEs() []PEInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cardPEs
}

// Close closes the connection.
func (s *Session) Close() error {
	err := s.conn.Close()
	s.closeOnce.Do(func() {
		if s.onClose != nil {
			s.onClose()
		}
	})
	return err
}

// LocalAddr returns the local address.
func (s *Session) LocalAddr() net.Addr { return s.conn.LocalAddr() }

// RemoteAddr returns the peer's address.
func (s *Session) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// SetDeadline sets the read and write deadlines.
func (s *Session) SetDeadline(t time.Time) error { return s.conn.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (s *Session) SetReadDeadline(t time.Time) error { return s.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (s *Session) SetWriteDeadline(t time.Time) error { return s.conn.SetWriteDeadline(t) }
