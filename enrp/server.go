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
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/security"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/transport"
	"github.com/rspxdp/rspxdp/wire"
)

// ServerConfig configures a registrar Server: the core's Config plus where
// to listen, whom to peer with and how to announce.
type ServerConfig struct {
	Config
	// Transport is "tcp", "sctp" or "auto" (default "tcp").
	Transport string
	// ASAPListen and ENRPListen are the listen addresses (defaults
	// ":3863" and ":9901"). Config.ASAP and Config.ENRP, when unset, are
	// filled in from the bound addresses.
	ASAPListen, ENRPListen string
	// Peers are static ENRP peers ("host:port"), dialled and redialled.
	Peers []string
	// Announce enables ASAP Server Announces over UDP to AnnounceUnicast
	// and, if AnnounceMulticast, to the ASAP announce group.
	Announce          bool
	AnnounceUnicast   []netip.AddrPort
	AnnounceMulticast bool
	// PeerAnnounce enables peer discovery by announces: an ENRP Presence
	// every heartbeat to PeerAnnounceUnicast and, if PeerAnnounceMulticast,
	// the ENRP announce group; PeerAnnounceListen ("host:port", or the
	// group's port with PeerAnnounceMulticast) receives the others'.
	PeerAnnounce          bool
	PeerAnnounceUnicast   []netip.AddrPort
	PeerAnnounceMulticast bool
	PeerAnnounceListen    string
	// DialTimeout bounds connection set-up to peers and PEs (default 2 s).
	DialTimeout time.Duration
	// LeaveTimeout bounds the graceful leave when Run's context ends: how
	// long to wait for a peer to take this registrar's PEs over before
	// closing anyway (0: DefaultLeaveTimeout; negative: no graceful leave,
	// peers find out by their timers). See leave.go.
	LeaveTimeout time.Duration
	// BeforeSend, if set, is called with the registrar's lock held after
	// every change of state and before the messages it caused are queued.
	// The node programs the data plane there, so a PE removed for failed
	// keep-alives is out of the XDP maps before the Handle Update announcing
	// its removal leaves. It must be quick and must not call the Server.
	BeforeSend func()
	// ObserveResolution, if set, receives how long each Handle Resolution
	// took from its arrival to its answer being queued.
	ObserveResolution func(time.Duration)

	// MaxConnections bounds the associations accepted on each listener
	// (0: DefaultMaxConnections); past it new ones are closed at once and
	// logged, so a connection flood cannot exhaust descriptors.
	MaxConnections int
	// MaxConnectionsPerSource bounds the associations one source address
	// (IPv6: one /64) may hold on each listener (0:
	// DefaultMaxConnectionsPerSource).
	MaxConnectionsPerSource int
	// FirstMessageTimeout closes an accepted connection that has not sent
	// one whole message (TLS handshake included) this long after it was
	// accepted (0: DefaultFirstMessageTimeout), so silent connections
	// cannot hold slots.
	FirstMessageTimeout time.Duration
	// IdleTimeout closes an accepted connection that carries no PE and no
	// peer and has sent nothing for this long (0: DefaultIdleTimeout;
	// negative: never). Eviction frees a slot only once a listener is
	// full; this returns the memory and descriptors of connections
	// abandoned by clients (or held by an attacker) before it is.
	IdleTimeout time.Duration
	// QueueBudget bounds the bytes queued for sending over all connections
	// (0: DefaultQueueBudget); a connection that would take the total past
	// it is closed, as one that stops reading is.
	QueueBudget int
	// Security, if set, runs ASAP and ENRP over mutually authenticated
	// TLS with authorisation and abuse limits (security.go); nil is plain
	// TCP or SCTP as Transport says.
	Security *Security

	// drop, in tests, discards incoming messages (network partitions).
	drop func(Message) bool
}

// Server runs a registrar: it owns the listeners, connections, timers and
// UDP announces, and feeds a Core. Its methods are safe for concurrent use.
type Server struct {
	cfg   ServerConfig
	log   *slog.Logger
	asapT transport.Transport
	enrpT transport.Transport
	guard *guard // nil without ServerConfig.Security

	maxConns, maxPerSource int
	conns                  [3]connTable // open accepted associations, by wire.Protocol
	budget                 queueBudget
	stats                  serverStats
	// logs limits each noisy log line (conns.go).
	logs rateLogs
	// replies limits the Errors and rejections sent for broken messages,
	// per source.
	replies *security.RateLimiter

	mu       sync.Mutex // guards core, links, nextLink, byAddr, dialing, timerAt, enc, answers
	core     *Core
	links    map[LinkID]*link
	nextLink LinkID
	byAddr   map[netip.AddrPort]LinkID // links we dialled to PEs and peers
	dialing  map[netip.AddrPort][][]byte
	timerAt  time.Time   // when the timer loop next wakes
	enc      Encoder     // used under mu
	answers  answerCache // used under mu

	asapLn, enrpLn transport.Listener
	announcer      *transport.AnnounceSender
	peerAnnouncer  *transport.AnnounceSender
	peerRx         *transport.AnnounceReceiver
	kick           chan struct{}
	wg             sync.WaitGroup
	ctx            context.Context

	// dialCtx ends when the server starts leaving: no more peer dials
	// (redial.go) or accepted connections. dialled holds the addresses
	// of the dial loops (guarded by mu). Graceful leave (leave.go): abrupt
	// skips it, handedOver is closed once a peer took our PEs over.
	dialCtx   context.Context
	stopDials context.CancelFunc
	dialled   map[string]bool
	// staticUp is whether each static peer's last dial succeeded
	// (redial.go; StaticPeerStates).
	staticUp     map[string]bool
	abrupt       atomic.Bool
	handedOver   chan struct{}
	handoverOnce sync.Once
}

type link struct {
	id    LinkID
	conn  transport.Conn
	proto wire.Protocol
	q     outQueue
	done  chan struct{}
	once  sync.Once
	// unsent counts messages queued or being written (graceful leave
	// waits for it to reach 0).
	unsent atomic.Int64
	budget *queueBudget
	// table, for links from a listener, counts them (MaxConnections);
	// src is their source key there.
	table *connTable
	src   netip.Prefix
	// peer: an ENRP link the core has bound to a peer (its queue is sized
	// for handle tables). lastRead is when the last message arrived (unix
	// nanoseconds), for evicting the idlest.
	peer     atomic.Bool
	lastRead atomic.Int64
	spoke    atomic.Bool // a whole message arrived
	// evicted and overflow say why the link was closed, for the log.
	evicted, overflow atomic.Bool
	// ident is the peer's verified TLS identity (reader goroutine only).
	ident security.Identity
}

// NewServer binds the listeners; Run serves.
func NewServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if cfg.Transport == "" {
		cfg.Transport = "tcp"
	}
	if cfg.ASAPListen == "" {
		cfg.ASAPListen = transport.ASAP.DefaultAddr("")
	}
	if cfg.ENRPListen == "" {
		cfg.ENRPListen = transport.ENRP.DefaultAddr("")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if n := sizeConnections(cfg.MaxConnections, fdLimit()); n < cfg.MaxConnections {
		// Two full listeners past the descriptor limit would make accept
		// fail for everyone (issue 19 item 4).
		cfg.Logger.Warn("connection bound lowered to fit the descriptor limit (raise ulimit -n for more)",
			"maxConnections", n, "asked", cfg.MaxConnections, "RLIMIT_NOFILE", fdLimit())
		cfg.MaxConnections = n
	}
	if cfg.MaxConnectionsPerSource <= 0 {
		cfg.MaxConnectionsPerSource = DefaultMaxConnectionsPerSource
	}
	if cfg.FirstMessageTimeout <= 0 {
		cfg.FirstMessageTimeout = DefaultFirstMessageTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.QueueBudget <= 0 {
		cfg.QueueBudget = DefaultQueueBudget
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger.With("registrar", idString(cfg.ID)),
		links:   map[LinkID]*link{},
		byAddr:  map[netip.AddrPort]LinkID{},
		dialing: map[netip.AddrPort][][]byte{},
		kick:    make(chan struct{}, 1),

		dialled:    map[string]bool{},
		handedOver: make(chan struct{}),
		maxConns:   cfg.MaxConnections,

		maxPerSource: cfg.MaxConnectionsPerSource,
	}
	s.budget.max = int64(cfg.QueueBudget)
	s.replies = security.NewRateLimiter(security.RateConfig{Rate: replyRate, Burst: replyBurst})
	for i := range s.conns {
		s.conns[i].bySource = map[netip.Prefix]int{}
	}
	var err error
	if cfg.Security != nil {
		if s.guard, err = newGuard(cfg.Security); err != nil {
			return nil, fmt.Errorf("registrar: %w", err)
		}
		if s.asapT, s.enrpT, err = s.guard.transports(cfg.Transport, transport.Config{Logger: cfg.Logger}); err != nil {
			return nil, fmt.Errorf("registrar: %w", err)
		}
		// Distinct reporters are counted before the Core (security.go).
		s.cfg.Config.MaxBadPEReports = 1
	} else {
		if s.asapT, err = transport.New(cfg.Transport, transport.Config{Protocol: transport.ASAP, Logger: cfg.Logger}); err != nil {
			return nil, fmt.Errorf("registrar: %w", err)
		}
		if s.enrpT, err = transport.New(cfg.Transport, transport.Config{Protocol: transport.ENRP, Logger: cfg.Logger, DialFromListener: true}); err != nil {
			return nil, fmt.Errorf("registrar: %w", err)
		}
	}
	if s.asapLn, err = s.asapT.Listen(ctx, cfg.ASAPListen); err != nil {
		return nil, fmt.Errorf("registrar: listen ASAP %s: %w", cfg.ASAPListen, err)
	}
	if s.enrpLn, err = s.enrpT.Listen(ctx, cfg.ENRPListen); err != nil {
		s.asapLn.Close()
		return nil, fmt.Errorf("registrar: listen ENRP %s: %w", cfg.ENRPListen, err)
	}
	if !cfg.Config.ASAP.IsValid() {
		s.cfg.Config.ASAP = advertised(s.asapLn.Addr())
	}
	if !cfg.Config.ENRP.IsValid() {
		s.cfg.Config.ENRP = advertised(s.enrpLn.Addr())
	}
	if cfg.Config.Transport == 0 {
		s.cfg.Config.Transport = protocolOfTransport(s.enrpT)
	}
	if s.core, err = NewCore(s.cfg.Config, time.Now()); err != nil {
		s.asapLn.Close()
		s.enrpLn.Close()
		return nil, err
	}
	if len(cfg.Peers) == 0 {
		s.core.MarkSynced()
	}
	if cfg.Announce {
		ac := transport.AnnounceSenderConfig{Unicast: cfg.AnnounceUnicast, Loopback: true}
		if cfg.AnnounceMulticast {
			g := transport.ASAP.AnnounceGroup()
			ip, _ := netip.AddrFromSlice(g.IP.To4())
			ac.Group = netip.AddrPortFrom(ip, uint16(g.Port))
		}
		if s.announcer, err = transport.NewAnnounceSender(ac); err != nil {
			s.asapLn.Close()
			s.enrpLn.Close()
			return nil, fmt.Errorf("registrar: announces: %w", err)
		}
		s.core.Announce = true
	}
	if cfg.PeerAnnounce {
		if err := s.openPeerAnnounces(); err != nil {
			s.asapLn.Close()
			s.enrpLn.Close()
			if s.announcer != nil {
				s.announcer.Close()
			}
			return nil, err
		}
		s.core.PeerAnnounce = true
	}
	return s, nil
}

func (s *Server) openPeerAnnounces() error {
	cfg := s.cfg
	ac := transport.AnnounceSenderConfig{Unicast: cfg.PeerAnnounceUnicast, Loopback: true}
	rc := transport.AnnounceReceiverConfig{Logger: s.log}
	g := transport.ENRP.AnnounceGroup()
	group := netip.AddrPortFrom(netip.AddrFrom4([4]byte(g.IP.To4())), uint16(g.Port))
	if cfg.PeerAnnounceMulticast {
		ac.Group = group
		rc.Group = group.Addr()
		rc.Addr = group
	}
	if cfg.PeerAnnounceListen != "" {
		ap, err := netip.ParseAddrPort(cfg.PeerAnnounceListen)
		if err != nil {
			return fmt.Errorf("registrar: peer announce listen %q: %w", cfg.PeerAnnounceListen, err)
		}
		rc.Addr = ap
	}
	var err error
	if s.peerAnnouncer, err = transport.NewAnnounceSender(ac); err != nil {
		return fmt.Errorf("registrar: peer announces: %w", err)
	}
	if rc.Addr.IsValid() {
		if s.peerRx, err = transport.ListenAnnounces(rc); err != nil {
			s.peerAnnouncer.Close()
			return fmt.Errorf("registrar: peer announces: %w", err)
		}
	}
	return nil
}

// PeerAnnounceAddr returns where peer announces are received, or nil.
func (s *Server) PeerAnnounceAddr() net.Addr {
	if s.peerRx == nil {
		return nil
	}
	return s.peerRx.LocalAddr()
}

// peerAnnounceLoop turns Presence announces heard over UDP into
// connections to registrars we do not know yet.
func (s *Server) peerAnnounceLoop(ctx context.Context) {
	defer s.wg.Done()
	var dec wire.Decoder
	var w wire.Message
	for {
		b, from, err := s.peerRx.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if dec.Decode(wire.ENRP, b, &w) != nil {
			continue
		}
		m, err := msg.FromWire(&w)
		p, ok := m.(Presence)
		if err != nil || !ok {
			continue
		}
		info := p.Info
		if info.ID == 0 {
			info.ID = p.Sender
		}
		if !info.ENRP.IsValid() {
			continue
		}
		s.log.Debug("peer announce", "from", from.String(), "peer", idString(info.ID))
		s.mu.Lock()
		s.core.Discovered(info)
		later := s.flushLocked(s.core.Drain())
		s.mu.Unlock()
		s.finish(later)
	}
}

// protocolOfTransport maps a transport to the protocol its endpoints are
// advertised with (TLS runs over TCP).
func protocolOfTransport(t transport.Transport) selector.Protocol {
	if t.Name() == "sctp" {
		return selector.SCTP
	}
	return selector.TCP
}

// withASAPEndpoint gives a Registration whose Pool Element has no ASAP
// transport parameter the address of the association it came on, as RFC
// 5354 (3.7) has the registrar record it: peers need it to reach the PE
// after a takeover, and rsplib refuses a Handle Update, Handle Table
// Response or Handle Resolution Response whose Pool Element lacks it
// ("invalid registrator"). An ASAP address the PE sent itself is kept: over
// TCP the association's port is an ephemeral one nobody can dial back.
func withASAPEndpoint(m Message, remote netip.AddrPort, proto selector.Protocol) Message {
	r, ok := m.(Registration)
	if !ok || r.PE.ASAP.IsValid() || !remote.IsValid() {
		return m
	}
	r.PE.ASAP, r.PE.ASAPProtocol = remote, proto
	return r
}

// advertised turns a bound address into one peers can reach: an
// unspecified host becomes loopback (the operator sets Config.ASAP/ENRP
// for anything else).
func advertised(a net.Addr) netip.AddrPort {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}
	}
	if ap.Addr().IsUnspecified() {
		ap = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ap.Port())
	}
	return ap
}

// ASAPAddr and ENRPAddr return the bound listen addresses.
func (s *Server) ASAPAddr() net.Addr { return s.asapLn.Addr() }

// ENRPAddr returns the bound ENRP listen address.
func (s *Server) ENRPAddr() net.Addr { return s.enrpLn.Addr() }

// ID returns the server identifier.
func (s *Server) ID() uint32 { return s.cfg.ID }

// Handlespace returns the handlespace, for subscriptions (the node) and
// read-only queries. It is safe for concurrent use.
func (s *Server) Handlespace() *selector.Handlespace { return s.core.Handlespace() }

// Snapshot returns a copy of the handlespace (pools sorted by handle, PEs
// by identifier).
func (s *Server) Snapshot() []Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.core.Snapshot()
}

// Checksum returns this registrar's checksum over the PEs owner owns.
func (s *Server) Checksum(owner uint32) uint16 { return s.core.Handlespace().Checksum(owner) }

// Count returns the number of active PEs.
func (s *Server) Count() int { return s.core.Handlespace().Len() }

// Counters returns the registrar's counters.
func (s *Server) Counters() Counters {
	s.mu.Lock()
	c := s.core.Counters()
	s.mu.Unlock()
	st := &s.stats
	c.AcceptErrors, c.ConnectionsRefused, c.ConnectionsEvicted = st.acceptErrors.Load(), st.connsRefused.Load(), st.connsEvicted.Load()
	c.QueueOverflows, c.FirstMessageTimeouts = st.queueOverflows.Load(), st.firstMessageTimeouts.Load()
	c.IdleClosed = st.idleClosed.Load()
	c.WrongProtocol, c.RepliesSuppressed = st.notThisProtocol.Load(), st.repliesSuppressed.Load()
	c.Goroutines = uint64(runtime.NumGoroutine())
	return c
}

// Peers returns the server IDs of the live peers.
func (s *Server) Peers() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.core.Peers()
}

// Run serves until ctx ends, then leaves gracefully (leave.go: peers are
// asked to take this registrar's PEs over at once, bounded by
// LeaveTimeout) and closes every connection.
func (s *Server) Run(ctx context.Context) error {
	outer := ctx
	// The connections outlive ctx for the graceful leave.
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	s.mu.Lock()
	s.ctx = ctx
	s.dialCtx, s.stopDials = context.WithCancel(ctx)
	s.mu.Unlock()
	s.log.Info("registrar started", "asap", s.asapLn.Addr().String(), "enrp", s.enrpLn.Addr().String(),
		"transport", s.asapT.Name(), "peers", s.StaticPeers())
	s.wg.Add(3)
	go s.acceptLoop(s.dialCtx, s.asapLn, wire.ASAP)
	go s.acceptLoop(s.dialCtx, s.enrpLn, wire.ENRP)
	go s.timerLoop(ctx)
	if s.cfg.IdleTimeout > 0 {
		s.wg.Add(1)
		go s.idleLoop(ctx)
	}
	for _, p := range s.StaticPeers() {
		s.keepPeer(p, 0)
	}
	if s.peerRx != nil {
		s.wg.Add(1)
		go s.peerAnnounceLoop(ctx)
	}
	<-outer.Done()
	s.leave()
	cancel()
	s.asapLn.Close()
	s.enrpLn.Close()
	s.mu.Lock()
	for _, l := range s.links {
		l.close()
	}
	s.mu.Unlock()
	if s.announcer != nil {
		s.announcer.Close()
	}
	if s.peerAnnouncer != nil {
		s.peerAnnouncer.Close()
	}
	if s.peerRx != nil {
		s.peerRx.Close()
	}
	s.wg.Wait()
	s.log.Info("registrar left")
	return nil
}

// DefaultMaxConnections bounds the associations per listener.
const DefaultMaxConnections = 10000

// addLink registers a connection and starts its reader and writer.
func (s *Server) addLink(c transport.Conn, p wire.Protocol, peerDial bool, table *connTable, src netip.Prefix) *link {
	s.mu.Lock()
	s.nextLink++
	l := &link{id: s.nextLink, conn: c, proto: p, done: make(chan struct{}), budget: &s.budget, table: table, src: src}
	l.q.wake = make(chan struct{}, 1)
	l.lastRead.Store(time.Now().UnixNano())
	s.links[l.id] = l
	if peerDial {
		s.core.LinkUp(l.id)
	}
	later := s.flushLocked(s.core.Drain())
	s.mu.Unlock()
	s.wg.Add(2)
	go s.writeLoop(l)
	go s.readLoop(l)
	s.finish(later)
	return l
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.conn.Close()
	})
}

func (s *Server) writeLoop(l *link) {
	defer s.wg.Done()
	defer l.drainQueue()
	// Messages that queued up while the last write was under way leave
	// together (transport.BatchWriter).
	bw, _ := l.conn.(transport.BatchWriter)
	var batch [][]byte
	for {
		select {
		case <-l.done:
			return
		case <-l.q.wake:
		}
		var err error
		if batch, err = l.writeQueued(s.ctx, bw, batch); err != nil {
			l.close()
			return
		}
	}
}

// maxWriteBatch bounds the messages sent with one write.
const maxWriteBatch = 64

func (s *Server) readLoop(l *link) {
	defer s.wg.Done()
	var readErr error
	defer func() { s.dropLink(l, s.ctx.Err() == nil && aborted(readErr)) }()
	src, remote := netip.Addr{}, netip.AddrPort{}
	if ap, err := netip.ParseAddrPort(l.conn.RemoteAddr().String()); err == nil {
		src = ap.Addr().Unmap()
		remote = netip.AddrPortFrom(src, ap.Port())
	}
	var dec wire.Decoder
	var w wire.Message
	first := l.table != nil
	checkFirst := first
	// An ASAP link's reader writes the answers to what it read itself
	// (writeQueued). Not an ENRP link's: two registrars writing a big
	// handle table to each other from their readers could both block,
	// neither reading.
	inline := l.proto == wire.ASAP
	bw, _ := l.conn.(transport.BatchWriter)
	pending, _ := l.conn.(transport.Pending)
	var batch [][]byte
	deferred := 0 // messages handled since the reader last wrote its queue
	var now time.Time
	for {
		// What the reader queued is written before it may block in a
		// read, and held back while more requests are already buffered
		// (answered then with one write).
		if deferred > 0 && (pending == nil || !pending.MessageBuffered() || deferred >= maxWriteBatch) {
			batch = l.endInline(s.ctx, bw, batch)
			deferred = 0
		}
		var b []byte
		var err error
		if first {
			b, err = s.readFirst(l)
			first = false
		} else {
			b, err = l.conn.ReadMessage(s.ctx)
		}
		if err != nil {
			readErr = err
			if deferred > 0 {
				l.endInline(s.ctx, bw, batch)
			}
			if !errors.Is(err, io.EOF) && s.ctx.Err() == nil {
				s.log.Debug("connection closed", "remote", l.conn.RemoteAddr().String(), "err", err)
			}
			return
		}
		// One clock read per message read after a wait; a message that was
		// already queued behind the previous one (deferred > 0: Pending
		// said so) arrived by then and takes its time. Under emulation (the
		// test VM's HPET) a clock read is a system call, a twentieth of a
		// resolution's cost.
		if deferred == 0 || now.IsZero() {
			now = time.Now()
		}
		l.lastRead.Store(now.UnixNano())
		l.spoke.Store(true)
		derr := dec.Decode(l.proto, b, &w)
		var m Message
		if derr == nil {
			m, err = msg.FromWire(&w)
		}
		// Unknown messages and parameters get an Error (errmsg.go).
		m, report, ok := classify(l.proto, b, &w, derr, m, err)
		if checkFirst {
			checkFirst = false
			if why := s.notThisProtocol(l, m, ok); why != "" {
				s.count(&s.stats.notThisProtocol)
				s.warnEvery("closing connection: "+why, "protocol", l.proto.String(),
					"remote", l.conn.RemoteAddr().String(), "type", uint8(w.Type))
				return
			}
		}
		_, unknown := m.(Unrecognized)
		if (report != nil || unknown || !ok) && !s.replyAllowed(l) {
			continue // a flood of broken messages gets a few answers, not one each
		}
		if report != nil {
			s.step(l.id, src, *report)
		}
		if derr != nil && !ok {
			s.warnEvery("undecodable message", "protocol", l.proto.String(), "remote", l.conn.RemoteAddr().String(), "err", derr)
			continue
		}
		if !ok {
			s.log.Debug("message ignored", "remote", l.conn.RemoteAddr().String(), "err", err)
			if w.Protocol == wire.ASAP && w.Type == wire.ASAPRegistration {
				// A registration we cannot make sense of still gets its answer.
				s.mu.Lock()
				s.flushLocked([]Output{{Link: l.id, Msg: RegistrationResponse{
					Handle: string(w.PoolHandle()), Reject: true, Cause: CauseInvalidValues}}})
				s.mu.Unlock()
			}
			continue
		}
		if s.cfg.drop != nil && s.cfg.drop(m) {
			continue
		}
		if s.guard != nil {
			if m, ok = s.admit(l, remote, m); !ok {
				continue
			}
		}
		m = withASAPEndpoint(m, remote, s.cfg.Config.Transport)
		if !inline {
			s.stepAt(l.id, src, m, now)
			continue
		}
		if deferred == 0 {
			l.beginInline()
		}
		deferred++
		s.stepAt(l.id, src, m, now)
	}
}

// aborted reports whether a read error is the connection's abort or reset
// by the peer's side (TCP RST; SCTP ABORT shows as ECONNRESET, COMM_LOST as
// ETIMEDOUT) rather than a shutdown or our own close.
func aborted(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ETIMEDOUT)
}

// dropLink forgets a connection that ended; abort (see aborted) removes
// the PEs registered on it at once.
func (s *Server) dropLink(l *link, abort bool) {
	l.close()
	if l.table != nil {
		l.table.remove(l.src)
	}
	switch {
	case l.overflow.Load():
		s.count(&s.stats.queueOverflows)
		s.warnEvery("connection closed: its send queue is full (peer not reading, or queue budget spent)",
			"protocol", l.proto.String(), "remote", l.conn.RemoteAddr().String(), "budgetUsed", s.budget.used.Load())
	}
	s.mu.Lock()
	delete(s.links, l.id)
	for a, id := range s.byAddr {
		if id == l.id {
			delete(s.byAddr, a)
		}
	}
	if abort {
		s.core.LinkAborted(l.id)
	} else {
		s.core.LinkDown(l.id)
	}
	later := s.flushLocked(s.core.Drain())
	s.mu.Unlock()
	s.finish(later)
}

// step feeds one message to the core and sends what it produced.
func (s *Server) step(id LinkID, src netip.Addr, m Message) {
	s.stepAt(id, src, m, time.Now())
}

// stepAt is step for a message that arrived at start.
func (s *Server) stepAt(id LinkID, src netip.Addr, m Message, start time.Time) {
	s.mu.Lock()
	s.core.SetNow(start)
	s.core.Step(id, src, m)
	later := s.flushLocked(s.core.Drain())
	s.noteHandover()
	_, resolution := m.(HandleResolution)
	if resolution && s.cfg.ObserveResolution != nil {
		s.cfg.ObserveResolution(time.Since(start))
	}
	// Wake the timer loop only if this message armed a timer earlier than
	// the one it waits for (rare: most timers are an interval away). A
	// resolution arms none (TestResolutionArmsNoTimer), and it is the
	// message a loaded registrar handles most: it skips the look.
	wake := !resolution && !s.timerAt.IsZero() && s.core.NextDeadline().Before(s.timerAt)
	s.mu.Unlock()
	s.finish(later)
	if wake {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

func (s *Server) timerLoop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
		s.mu.Lock()
		s.core.Tick(time.Now())
		later := s.flushLocked(s.core.Drain())
		next := s.core.NextDeadline()
		s.timerAt = next
		s.mu.Unlock()
		s.finish(later)
		d := time.Until(next)
		if d < time.Millisecond {
			d = time.Millisecond
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(d)
	}
}

// deferredOut is an output that needs I/O set-up (a dial, an announce)
// and so is handled after s.mu is released.
type deferredOut struct {
	o Output
	b []byte
}

// flushLocked encodes the core's outputs and queues those for open links
// while s.mu is held, so every link carries messages in the order the core
// produced them (a Presence never overtakes the Handle Update it counts).
// The rest is returned for finish.
func (s *Server) flushLocked(outs []Output) []deferredOut {
	if s.cfg.BeforeSend != nil {
		s.cfg.BeforeSend()
	}
	var later []deferredOut
	for _, o := range outs {
		if o.ConnectPeer {
			later = append(later, deferredOut{o: o})
			continue
		}
		var b []byte
		var err error
		if r, ok := o.Msg.(HandleResolutionResponse); ok {
			b, err = s.answers.encode(&s.enc, r)
		} else {
			b, err = s.enc.Encode(o.Msg)
		}
		if err != nil {
			s.log.Error("encode failed", "err", err)
			continue
		}
		if !o.Announce {
			if l := s.links[o.Link]; l != nil {
				if l.proto == wire.ENRP && !l.peer.Load() && s.core.PeerLink(l.id) {
					l.peer.Store(true)
				}
				if l.enqueue(b) {
					continue
				}
			}
			if !o.Dial.IsValid() {
				continue
			}
		}
		later = append(later, deferredOut{o, b})
	}
	return later
}

// finish runs the deferred outputs; s.mu must not be held.
func (s *Server) finish(later []deferredOut) {
	for _, d := range later {
		switch {
		case d.o.Announce:
			a := s.announcer
			if d.o.PeerAnnounce {
				a = s.peerAnnouncer
			}
			if a != nil && s.ctx != nil {
				if err := a.Send(s.ctx, d.b); err != nil {
					s.log.Debug("announce failed", "err", err)
				}
			}
		case d.o.ConnectPeer:
			s.connectPeer(d.o.Dial, d.o.Peer)
		default:
			s.dialPE(d.o.Dial, d.b)
		}
	}
}

// dialPE sends b to a PE over a connection we open to its ASAP address
// (after a takeover, or when its own connection is gone). Messages for an
// address being dialled queue behind the dial.
func (s *Server) dialPE(addr netip.AddrPort, b []byte) {
	s.mu.Lock()
	if id, ok := s.byAddr[addr]; ok {
		if l := s.links[id]; l != nil {
			s.mu.Unlock()
			l.enqueue(b)
			return
		}
	}
	if q, ok := s.dialing[addr]; ok {
		s.dialing[addr] = append(q, b)
		s.mu.Unlock()
		return
	}
	if s.ctx == nil || s.ctx.Err() != nil {
		s.mu.Unlock()
		return
	}
	s.dialing[addr] = [][]byte{b}
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.DialTimeout)
		c, err := s.asapT.Dial(ctx, addr.String())
		cancel()
		s.mu.Lock()
		q := s.dialing[addr]
		delete(s.dialing, addr)
		s.mu.Unlock()
		if err != nil {
			s.log.Debug("dial PE failed", "addr", addr.String(), "err", err)
			return
		}
		l := s.addLink(c, wire.ASAP, false, nil, netip.Prefix{})
		s.mu.Lock()
		s.byAddr[addr] = l.id
		s.core.LinkDialled(l.id, addr)
		s.mu.Unlock()
		for _, m := range q {
			l.enqueue(m)
		}
	}()
}
