package transport

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
)

// Protocol says which RSerPool protocol a transport carries. It fixes the
// SCTP payload protocol identifier, the default port and the announce group.
type Protocol uint8

const (
	// ASAP is the Aggregate Server Access Protocol (RFC 5352): PE and PU to
	// registrar.
	ASAP Protocol = iota + 1
	// ENRP is the Endpoint haNdlespace Redundancy Protocol (RFC 5353):
	// registrar to registrar.
	ENRP
)

// Registered numbers (RFC 5352 section 6, RFC 5353 section 7) and rsplib's
// announce groups.
const (
	// PPIDASAP is the SCTP payload protocol identifier of ASAP.
	PPIDASAP uint32 = 11
	// PPIDENRP is the SCTP payload protocol identifier of ENRP.
	PPIDENRP uint32 = 12
	// PortASAP is ASAP's registered port (SCTP, TCP and UDP).
	PortASAP = 3863
	// PortENRP is ENRP's registered port (SCTP and UDP).
	PortENRP = 9901
)

// HeaderLen is the size of the common RSerPool message header: type (1 byte),
// flags (1 byte), length (2 bytes, big endian, whole message).
const HeaderLen = 4

// MaxMessageSize is the largest message the 16-bit length field can describe.
const MaxMessageSize = 65535

// PPID returns the SCTP payload protocol identifier of p.
func (p Protocol) PPID() uint32 {
	switch p {
	case ASAP:
		return PPIDASAP
	case ENRP:
		return PPIDENRP
	}
	return 0
}

// DefaultPort returns p's registered port.
func (p Protocol) DefaultPort() int {
	switch p {
	case ASAP:
		return PortASAP
	case ENRP:
		return PortENRP
	}
	return 0
}

// AnnounceGroup returns the IPv4 multicast group and port rsplib uses for
// p's server announces (ASAP 239.0.0.50:3863, ENRP 239.0.0.51:9901).
func (p Protocol) AnnounceGroup() *net.UDPAddr {
	switch p {
	case ASAP:
		return &net.UDPAddr{IP: net.IPv4(239, 0, 0, 50).To4(), Port: PortASAP}
	case ENRP:
		return &net.UDPAddr{IP: net.IPv4(239, 0, 0, 51).To4(), Port: PortENRP}
	}
	return nil
}

// DefaultAddr joins host with p's default port.
func (p Protocol) DefaultAddr(host string) string {
	return net.JoinHostPort(host, strconv.Itoa(p.DefaultPort()))
}

// String returns "ASAP", "ENRP" or "protocol(N)".
func (p Protocol) String() string {
	switch p {
	case ASAP:
		return "ASAP"
	case ENRP:
		return "ENRP"
	}
	return "protocol(" + strconv.Itoa(int(p)) + ")"
}

func (p Protocol) valid() bool { return p == ASAP || p == ENRP }

// Transport opens message connections for one protocol. The TCP (optionally
// TLS) and SCTP transports implement it; protocol code depends only on this
// interface, so the wire underneath can change without touching it.
type Transport interface {
	// Listen binds addr ("host:port"; SCTP also accepts multi-homed
	// "ip1/ip2:port") and returns a listener for incoming connections.
	Listen(ctx context.Context, addr string) (Listener, error)
	// Dial connects to addr. ctx bounds connection set-up (and the TLS
	// handshake); it does not limit the connection's life.
	Dial(ctx context.Context, addr string) (Conn, error)
	// Name is "tcp", "tls" or "sctp", for logs and flags.
	Name() string
}

// Listener accepts connections. Closing it does not close the connections it
// accepted.
type Listener interface {
	// Accept waits for the next connection or until ctx is done. It never
	// waits for a peer's first bytes (nor its TLS handshake), so one slow
	// peer cannot hold up the others. It returns net.ErrClosed (wrapped)
	// after Close and ctx.Err() when ctx ends; any other error is
	// transient (e.g. out of file descriptors): back off and call again.
	Accept(ctx context.Context) (Conn, error)
	// Close stops listening; a blocked Accept returns net.ErrClosed.
	Close() error
	// Addr returns the bound address (with the port chosen for ":0").
	Addr() net.Addr
}

// BatchWriter is implemented by connections that can send several whole
// messages with one system call (TCP and TLS, where frames simply follow
// each other on the stream). A server that finds messages queued for a
// peer sends them together: under load that halves the writes per
// message, which is where a loaded registrar spends its time. SCTP
// associations implement it with sendmmsg and MSG_MORE: one system call
// for the messages of a batch but the last, which goes alone and uncorks,
// so the messages stay separate messages, but their chunks share packets.
type BatchWriter interface {
	// WriteMessages sends msgs in order, each one whole message as for
	// Conn.WriteMessage, with the same timeout and failure rules.
	WriteMessages(ctx context.Context, msgs [][]byte) error
}

// Pending is implemented by connections that can tell, without waiting,
// whether a message is already there for the next ReadMessage: TCP and TLS
// look at their read buffer (no I/O); SCTP reads ahead (one recvmmsg takes
// every message queued) and answers from what it read, looking at the
// socket again (one non-blocking recvmmsg, whose messages the next reads
// return) only once those are used up. A server answering from its reader
// goroutine writes its answers once nothing more is pending, so requests
// that arrived together are answered with one write (BatchWriter). Only the
// goroutine that reads may call it.
type Pending interface {
	// MessageBuffered reports whether the next ReadMessage returns a
	// message without reading from the network. It may read ahead into
	// the connection's buffer (SCTP), so the slice the last ReadMessage
	// returned is not valid after it: call it once done with that one.
	MessageBuffered() bool
}

// Conn carries whole RSerPool messages in both directions.
//
// One goroutine may read while others write; writes are serialised so
// messages never interleave.
type Conn interface {
	// ReadMessage returns the next whole message, header included. The
	// returned slice is owned by the Conn and valid until the next
	// ReadMessage; copy it to keep it. It returns io.EOF when the peer
	// closed cleanly between messages, ctx.Err() when ctx ended (the
	// connection stays usable if it ended between messages; a stream cut
	// mid-frame is closed), and a *FrameError (after closing the
	// connection and logging why) when the peer broke the framing or
	// idled past Config.IdleTimeout. One goroutine reads at a time.
	ReadMessage(ctx context.Context) ([]byte, error)
	// WriteMessage sends msg, which must be one whole message whose header
	// length equals len(msg); anything else is refused before it reaches
	// the wire. It waits at most until ctx ends or Config.WriteTimeout
	// passes. A failed write closes a TCP/TLS connection (part of a frame
	// may have left, and the stream cannot be resynchronised); an SCTP
	// association, which sends whole messages or nothing, stays open.
	WriteMessage(ctx context.Context, msg []byte) error
	// Close closes the connection; a blocked ReadMessage returns.
	Close() error
	// LocalAddr returns the local address.
	LocalAddr() net.Addr
	// RemoteAddr returns the peer's address.
	RemoteAddr() net.Addr
	// Peer returns what the transport has authenticated about the peer.
	// Plain TCP and SCTP authenticate nothing. Over TLS it is filled in
	// once the handshake is done: after Dial, or after the first
	// ReadMessage or WriteMessage on an accepted Conn returns.
	Peer() Identity
}

// Identity is the authenticated identity of a peer.
type Identity struct {
	// Chain is the peer certificate chain verified by TLS, leaf first. It is
	// nil when nothing was verified.
	Chain []*x509.Certificate
}

// Authenticated reports whether the peer proved an identity.
func (id Identity) Authenticated() bool { return len(id.Chain) > 0 }

// Leaf returns the peer's own certificate, or nil.
func (id Identity) Leaf() *x509.Certificate {
	if len(id.Chain) == 0 {
		return nil
	}
	return id.Chain[0]
}

// Config configures a transport. The zero value of every field but Protocol
// picks a sensible default.
type Config struct {
	// Protocol is ASAP or ENRP (required).
	Protocol Protocol
	// MaxMessageSize is the largest message accepted from a peer; a frame
	// announcing more closes the connection. 0 means MaxMessageSize (65535).
	MaxMessageSize int
	// FrameTimeout bounds the time from a frame's first byte to its last.
	// A peer that stalls mid-frame is cut off after it. 0 means 10s.
	FrameTimeout time.Duration
	// HandshakeTimeout bounds an accepted connection's TLS handshake, so a
	// peer that connects and stalls is cut off. Dial's handshake is bounded
	// by its context instead. 0 means 10s.
	HandshakeTimeout time.Duration
	// IdleTimeout, when positive, closes a connection that sends nothing
	// for that long between messages. 0 means no limit: ASAP associations
	// are long-lived and quiet, and liveness is the protocols' business
	// (keep-alives), not the transport's.
	IdleTimeout time.Duration
	// WriteTimeout bounds one WriteMessage when ctx has no earlier
	// deadline, so a peer that stops reading cannot block a writer for
	// ever. 0 means 10s.
	WriteTimeout time.Duration
	// Logger receives one record per connection closed for a reason.
	// nil means slog.Default().
	Logger *slog.Logger
	// DialFromListener, on SCTP, binds every association Dial opens to the
	// address and port of the transport's first listener (SO_REUSEPORT on
	// both sockets), so the peer sees it come from the advertised port.
	// ENRP needs it with rsplib, which drops a Presence whose association
	// does not come from the ENRP port it names. Dial fails until a
	// listener is bound. TCP ignores it.
	DialFromListener bool
}

func (c Config) withDefaults() (Config, error) {
	if !c.Protocol.valid() {
		return c, fmt.Errorf("transport config: unknown protocol %d (want ASAP or ENRP)", c.Protocol)
	}
	switch {
	case c.MaxMessageSize == 0:
		c.MaxMessageSize = MaxMessageSize
	case c.MaxMessageSize < HeaderLen || c.MaxMessageSize > MaxMessageSize:
		return c, fmt.Errorf("transport config: max message size %d outside [%d, %d]", c.MaxMessageSize, HeaderLen, MaxMessageSize)
	}
	if c.FrameTimeout <= 0 {
		c.FrameTimeout = 10 * time.Second
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.IdleTimeout < 0 {
		c.IdleTimeout = 0
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Errors a peer can cause. A *FrameError wraps exactly one of them, so
// errors.Is(err, ErrOversized) tells what happened and errors.As gives the
// detail.
var (
	// ErrBadLength: a header's length field is below the header size.
	ErrBadLength = errors.New("message length below header size")
	// ErrOversized: a header's length field exceeds the configured maximum.
	ErrOversized = errors.New("message length above maximum")
	// ErrTruncated: the peer closed the connection inside a frame.
	ErrTruncated = errors.New("connection closed mid-message")
	// ErrStalled: a frame's first bytes arrived, the rest not within the
	// frame timeout.
	ErrStalled = errors.New("peer stalled mid-message")
	// ErrIdle: nothing arrived within the idle timeout.
	ErrIdle = errors.New("connection idle too long")
	// ErrWrongPPID: an SCTP message carried another protocol's payload
	// protocol identifier.
	ErrWrongPPID = errors.New("wrong SCTP payload protocol identifier")
	// ErrLengthMismatch: a message's length field disagrees with the size
	// of the datagram or SCTP message that carried it.
	ErrLengthMismatch = errors.New("length field disagrees with message size")
)

// FrameError reports a connection closed because its peer broke the message
// framing (or went idle). The connection is already closed when it is
// returned.
type FrameError struct {
	// Err is one of ErrBadLength, ErrOversized, ErrTruncated, ErrStalled,
	// ErrIdle, ErrWrongPPID, ErrLengthMismatch.
	Err error
	// Remote is the peer's address.
	Remote net.Addr
	// Length is the header's length field (or the message size), when known.
	Length int
	// Got is how many bytes of the frame had arrived (ErrTruncated,
	// ErrStalled), or the PPID received (ErrWrongPPID).
	Got int
	// Cause is the underlying I/O error, if any.
	Cause error
}

// Error says which peer did what, with the numbers that show it.
func (e *FrameError) Error() string {
	s := fmt.Sprintf("peer %v: %v", e.Remote, e.Err)
	switch {
	case errors.Is(e.Err, ErrWrongPPID):
		s += fmt.Sprintf(" (got %d)", e.Got)
	case errors.Is(e.Err, ErrTruncated), errors.Is(e.Err, ErrStalled):
		if e.Length > 0 {
			s += fmt.Sprintf(" (%d of %d bytes)", e.Got, e.Length)
		} else {
			s += fmt.Sprintf(" (%d header bytes)", e.Got)
		}
	case e.Length > 0 || errors.Is(e.Err, ErrBadLength):
		s += fmt.Sprintf(" (length %d)", e.Length)
	}
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap returns Err, so errors.Is works with the sentinels.
func (e *FrameError) Unwrap() error { return e.Err }

// checkOutgoing refuses to send something that is not one whole message: a
// bug in the encoder must not desynchronise a TCP stream.
func checkOutgoing(msg []byte, max int) error {
	if len(msg) < HeaderLen {
		return fmt.Errorf("write message: %d bytes is shorter than the header", len(msg))
	}
	if len(msg) > max {
		return fmt.Errorf("write message: %d bytes exceeds the maximum %d", len(msg), max)
	}
	if l := int(binary.BigEndian.Uint16(msg[2:4])); l != len(msg) {
		return fmt.Errorf("write message: header length %d but %d bytes given", l, len(msg))
	}
	return nil
}

// closeLogged closes c after logging why; used for every closure a peer
// caused.
func closeLogged(log *slog.Logger, proto Protocol, name string, c interface{ Close() error }, fe *FrameError) {
	log.Warn("closing connection", "transport", name, "protocol", proto.String(),
		"remote", fmt.Sprint(fe.Remote), "reason", fe.Error())
	_ = c.Close()
}

// readDeadline is deadlineFor(ctx, time.Now(), d) reading the clock only
// when d asks for it: reads wait without an idle limit by default, and in a
// guest whose clock source is emulated (the test VM's HPET) every clock
// read is a system call.
func readDeadline(ctx context.Context, d time.Duration) time.Time {
	if d <= 0 {
		t, _ := ctx.Deadline()
		return t
	}
	return deadlineFor(ctx, time.Now(), d)
}

// deadlineFor returns the earlier of ctx's deadline and now+d (d <= 0: no
// limit from d). The zero time means no deadline.
func deadlineFor(ctx context.Context, now time.Time, d time.Duration) time.Time {
	var t time.Time
	if d > 0 {
		t = now.Add(d)
	}
	if cd, ok := ctx.Deadline(); ok && (t.IsZero() || cd.Before(t)) {
		t = cd
	}
	return t
}

// New returns the transport named kind: "tcp", "sctp", or "auto" (SCTP when
// the kernel has it, else TCP). TLS over TCP is NewTLS.
func New(kind string, cfg Config) (Transport, error) {
	switch kind {
	case "tcp":
		return NewTCP(cfg)
	case "sctp":
		return NewSCTP(cfg)
	case "auto", "":
		if SCTPSupported() == nil {
			return NewSCTP(cfg)
		}
		return NewTCP(cfg)
	}
	return nil, fmt.Errorf("transport %q: unknown (want tcp, sctp or auto)", kind)
}
