package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// AnnounceSenderConfig configures an AnnounceSender. Announces go to every
// address in Unicast and, if Group is valid, to the multicast group.
type AnnounceSenderConfig struct {
	// Unicast lists peers that get each announce directly (for networks
	// without multicast).
	Unicast []netip.AddrPort
	// Group is the multicast group and port, e.g. ASAP.AnnounceGroup(); the
	// zero value sends no multicast.
	Group netip.AddrPort
	// Interface names the interface multicast leaves by; "" lets the
	// routing table choose.
	Interface string
	// TTL is the multicast TTL (IPv6: hop limit); 0 means 1, keeping
	// announces on the local link as rsplib does by default.
	TTL int
	// Loopback, when true, delivers multicast announces to listeners on this
	// host too.
	Loopback bool
	// Local is the source address to bind; the zero value picks any.
	Local netip.AddrPort
}

// AnnounceSender sends ENRP/ASAP server announces over UDP.
type AnnounceSender struct {
	conn  *net.UDPConn
	dests []netip.AddrPort
}

// NewAnnounceSender opens the UDP socket announces leave from.
func NewAnnounceSender(cfg AnnounceSenderConfig) (*AnnounceSender, error) {
	cfg.Group = netip.AddrPortFrom(cfg.Group.Addr().Unmap(), cfg.Group.Port())
	cfg.Local = netip.AddrPortFrom(cfg.Local.Addr().Unmap(), cfg.Local.Port())
	var dests []netip.AddrPort
	for _, d := range cfg.Unicast {
		d = netip.AddrPortFrom(d.Addr().Unmap(), d.Port())
		if !d.IsValid() || d.Port() == 0 {
			return nil, fmt.Errorf("announce sender: invalid unicast destination %v", d)
		}
		dests = append(dests, d)
	}
	v6 := cfg.Local.Addr().Is6()
	if cfg.Group.IsValid() {
		if !cfg.Group.Addr().IsMulticast() {
			return nil, fmt.Errorf("announce sender: %v is not a multicast group", cfg.Group.Addr())
		}
		v6 = cfg.Group.Addr().Is6()
		dests = append(dests, cfg.Group)
	}
	if len(dests) == 0 {
		return nil, errors.New("announce sender: no destination (set Unicast or Group)")
	}
	network := "udp4"
	if v6 {
		network = "udp6"
	}
	var laddr *net.UDPAddr
	if cfg.Local.IsValid() {
		laddr = net.UDPAddrFromAddrPort(cfg.Local)
	}
	conn, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, fmt.Errorf("announce sender: %w", err)
	}
	if cfg.Group.IsValid() {
		if err := setMulticastOptions(conn, v6, cfg); err != nil {
			conn.Close()
			return nil, fmt.Errorf("announce sender: %w", err)
		}
	}
	return &AnnounceSender{conn: conn, dests: dests}, nil
}

func setMulticastOptions(conn *net.UDPConn, v6 bool, cfg AnnounceSenderConfig) error {
	ttl := cfg.TTL
	if ttl <= 0 {
		ttl = 1
	}
	loop := 0
	if cfg.Loopback {
		loop = 1
	}
	ifIndex := 0
	if cfg.Interface != "" {
		ifi, err := net.InterfaceByName(cfg.Interface)
		if err != nil {
			return fmt.Errorf("multicast interface: %w", err)
		}
		ifIndex = ifi.Index
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		s := int(fd)
		if v6 {
			if serr = unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, ttl); serr != nil {
				serr = fmt.Errorf("IPV6_MULTICAST_HOPS: %w", serr)
				return
			}
			if serr = unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, loop); serr != nil {
				serr = fmt.Errorf("IPV6_MULTICAST_LOOP: %w", serr)
				return
			}
			if ifIndex != 0 {
				if serr = unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifIndex); serr != nil {
					serr = fmt.Errorf("IPV6_MULTICAST_IF: %w", serr)
				}
			}
			return
		}
		if serr = unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, ttl); serr != nil {
			serr = fmt.Errorf("IP_MULTICAST_TTL: %w", serr)
			return
		}
		if serr = unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, loop); serr != nil {
			serr = fmt.Errorf("IP_MULTICAST_LOOP: %w", serr)
			return
		}
		if ifIndex != 0 {
			if serr = unix.SetsockoptIPMreqn(s, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifIndex)}); serr != nil {
				serr = fmt.Errorf("IP_MULTICAST_IF: %w", serr)
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// LocalAddr returns the address announces are sent from.
func (s *AnnounceSender) LocalAddr() net.Addr { return s.conn.LocalAddr() }

// Send sends msg (one whole message) to every destination. It tries them
// all and returns the errors joined.
func (s *AnnounceSender) Send(ctx context.Context, msg []byte) error {
	if err := checkOutgoing(msg, MaxMessageSize); err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	if d, ok := ctx.Deadline(); ok {
		_ = s.conn.SetWriteDeadline(d)
	} else {
		_ = s.conn.SetWriteDeadline(time.Time{})
	}
	var errs []error
	for _, d := range s.dests {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := s.conn.WriteToUDPAddrPort(msg, d); err != nil {
			errs = append(errs, fmt.Errorf("announce to %v: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// Close closes the socket.
func (s *AnnounceSender) Close() error { return s.conn.Close() }

// AnnounceReceiverConfig configures an AnnounceReceiver.
type AnnounceReceiverConfig struct {
	// Addr is where to listen. With Group set, only its port is used (the
	// socket binds the group address, so unicast to the port is not seen);
	// without Group it is a unicast bind such as "0.0.0.0:3863".
	Addr netip.AddrPort
	// Group is a multicast group to join; the zero value joins none.
	Group netip.Addr
	// Interface names the interface to join the group on; "" lets the
	// kernel choose.
	Interface string
	// MaxMessageSize bounds a datagram; 0 means MaxMessageSize.
	MaxMessageSize int
	// Logger records dropped datagrams; nil means slog.Default().
	Logger *slog.Logger
}

// AnnounceReceiver receives server announces.
type AnnounceReceiver struct {
	conn *net.UDPConn
	buf  []byte
	max  int
	log  *slog.Logger
}

// ListenAnnounces opens a receiver, joining cfg.Group if set.
func ListenAnnounces(cfg AnnounceReceiverConfig) (*AnnounceReceiver, error) {
	max := cfg.MaxMessageSize
	if max == 0 {
		max = MaxMessageSize
	}
	if max < HeaderLen || max > MaxMessageSize {
		return nil, fmt.Errorf("announce receiver: max message size %d outside [%d, %d]", max, HeaderLen, MaxMessageSize)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	var conn *net.UDPConn
	var err error
	cfg.Group = cfg.Group.Unmap()
	if cfg.Group.IsValid() {
		if !cfg.Group.IsMulticast() {
			return nil, fmt.Errorf("announce receiver: %v is not a multicast group", cfg.Group)
		}
		var ifi *net.Interface
		if cfg.Interface != "" {
			if ifi, err = net.InterfaceByName(cfg.Interface); err != nil {
				return nil, fmt.Errorf("announce receiver: %w", err)
			}
		}
		network := "udp4"
		if cfg.Group.Is6() {
			network = "udp6"
		}
		conn, err = net.ListenMulticastUDP(network, ifi, net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.Group, cfg.Addr.Port())))
	} else {
		// Shared like rsplib's registrars and PEs share it (SO_REUSEADDR
		// and SO_REUSEPORT): a PE or PU listening for announces on :3863
		// must not be refused next to an rsplib registrar on that port.
		lc := net.ListenConfig{Control: reusePort}
		var pc net.PacketConn
		if pc, err = lc.ListenPacket(context.Background(), "udp", net.UDPAddrFromAddrPort(cfg.Addr).String()); err == nil {
			conn = pc.(*net.UDPConn)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("announce receiver on %v group %v: %w", cfg.Addr, cfg.Group, err)
	}
	return &AnnounceReceiver{conn: conn, buf: make([]byte, max+1), max: max, log: log}, nil
}

// LocalAddr returns the bound address.
func (r *AnnounceReceiver) LocalAddr() net.Addr { return r.conn.LocalAddr() }

// Receive returns the next well-framed datagram and its source. Datagrams
// that are not one whole message (length field disagreeing with the
// datagram size, too short, too long) are logged and skipped. The returned
// slice is valid until the next Receive.
func (r *AnnounceReceiver) Receive(ctx context.Context) ([]byte, netip.AddrPort, error) {
	defer watch(ctx, func() { _ = r.conn.SetReadDeadline(time.Unix(1, 0)) })()
	d, _ := ctx.Deadline()
	if err := r.conn.SetReadDeadline(d); err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("receive announce: %w", err)
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, netip.AddrPort{}, err
		}
		n, from, err := r.conn.ReadFromUDPAddrPort(r.buf)
		if err != nil {
			if cerr := ctxExpired(ctx); cerr != nil {
				return nil, netip.AddrPort{}, cerr
			}
			return nil, netip.AddrPort{}, fmt.Errorf("receive announce: %w", err)
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		msg := r.buf[:n]
		var bad error
		switch {
		case n > r.max:
			bad = fmt.Errorf("%w: datagram over %d bytes", ErrOversized, r.max)
		case n < HeaderLen:
			bad = fmt.Errorf("%w: %d-byte datagram", ErrBadLength, n)
		case int(binary.BigEndian.Uint16(msg[2:4])) != n:
			bad = fmt.Errorf("%w: length %d in a %d-byte datagram", ErrLengthMismatch, binary.BigEndian.Uint16(msg[2:4]), n)
		}
		if bad != nil {
			r.log.Warn("dropping announce datagram", "from", from.String(), "reason", bad.Error())
			continue
		}
		return msg, from, nil
	}
}

// Close closes the socket (leaving the group).
func (r *AnnounceReceiver) Close() error { return r.conn.Close() }

// reusePort lets other sockets bind the announce port as well.
func reusePort(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}
	}); err != nil {
		return err
	}
	return serr
}
