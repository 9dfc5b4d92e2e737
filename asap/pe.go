package asap

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
	"github.com/rspxdp/rspxdp/transport"
	"github.com/rspxdp/rspxdp/wire"
)

// ErrRejected is wrapped by the error Register returns when a registrar
// refuses the registration; *RejectError says why.
var ErrRejected = errors.New("registration rejected")

// RejectError is a registrar's refusal with its RFC 5352 cause.
type RejectError struct{ Cause msg.Cause }

func (e *RejectError) Error() string { return fmt.Sprintf("registration rejected: %s", e.Cause) }

// Unwrap makes errors.Is(err, ErrRejected) true.
func (e *RejectError) Unwrap() error { return ErrRejected }

// PoolElement is a registered server: it keeps its registration alive and
// hands out the sessions pool users open to its listener.
type PoolElement struct {
	handle string
	cfg    config
	log    *slog.Logger
	ln     net.Listener
	tr     transport.Transport
	asapLn transport.Listener
	regs   *registrarSet

	mu       sync.Mutex // guards m, links, nextLink, sessions, firstErr
	m        *peMachine
	links    map[linkID]transport.Conn
	nextLink linkID
	sessions map[*Session]struct{}
	firstErr error
	lastErr  error // last registrar failure, for Register's error
	home     uint32

	registered chan struct{} // closed at the first outcome of registering
	regOnce    sync.Once
	// outageSince is when the PE lost its registrar (zero: registered);
	// outageEvents counts the failures since, for the recovery's log line.
	outageSince  time.Time
	outageEvents int
	closed       chan struct{} // closed once deregistered (or refused)
	closeOnce    sync.Once
	kick         chan struct{}
	ctx          context.Context
	cancel       context.CancelFunc
	wg           sync.WaitGroup
	sessGone     chan struct{} // poked whenever a session closes
	stopOnce     sync.Once
}

// Register registers the service listening on ln under the pool handle and
// keeps the registration alive until Close or Drain. It returns once a
// registrar accepted the registration, or with the error that stopped it
// (refusal, no registrar reachable before ctx ended). ctx bounds only the
// first registration.
func Register(ctx context.Context, handle string, ln net.Listener, opts ...Option) (*PoolElement, error) {
	cfg := newConfig(opts)
	if handle == "" {
		return nil, errors.New("register: empty pool handle")
	}
	if err := validateAddrs(cfg.registrars); err != nil {
		return nil, fmt.Errorf("register %s: %w", handle, err)
	}
	if len(cfg.registrars) == 0 && cfg.announces == "" {
		return nil, fmt.Errorf("register %s: %w", handle, ErrNoRegistrar)
	}
	if policy.Lookup(cfg.policy.Type) == nil {
		return nil, fmt.Errorf("register %s: unknown policy type %s", handle, cfg.policy.Type)
	}
	userAddrs, userPort, err := listenerAddrs(ln.Addr())
	if err != nil {
		return nil, fmt.Errorf("register %s: listener address %s: %w", handle, ln.Addr(), err)
	}
	user := netip.AddrPortFrom(userAddrs[0], userPort)
	tr, err := cfg.asapTransport()
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", handle, err)
	}
	id := cfg.peID
	for id == 0 {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("register %s: PE identifier: %w", handle, err)
		}
		id = binary.BigEndian.Uint32(b[:])
	}
	asapAddr := cfg.asapListen
	if asapAddr == "" {
		asapAddr = net.JoinHostPort(user.Addr().String(), "0")
	}
	asapLn, err := tr.Listen(ctx, asapAddr)
	if err != nil {
		return nil, fmt.Errorf("register %s: listen for keep-alives on %s: %w", handle, asapAddr, err)
	}
	asapAP, _ := netip.ParseAddrPort(asapLn.Addr().String())
	asapAP = netip.AddrPortFrom(asapAP.Addr().Unmap(), asapAP.Port())

	pctx, cancel := context.WithCancel(context.Background())
	p := &PoolElement{
		handle: handle, cfg: cfg, ln: ln, tr: tr, asapLn: asapLn,
		log:        cfg.log.With("pool", handle, "pe", wire.FormatID(id)),
		regs:       &registrarSet{addrs: append([]string(nil), cfg.registrars...)},
		links:      map[linkID]transport.Conn{},
		sessions:   map[*Session]struct{}{},
		registered: make(chan struct{}),
		closed:     make(chan struct{}),
		kick:       make(chan struct{}, 1),
		sessGone:   make(chan struct{}, 1),
		ctx:        pctx,
		cancel:     cancel,
	}
	pe := msg.PoolElement{
		ID:       id,
		Lifetime: cfg.lifetime,
		Transport: selector.Transport{Protocol: listenerProtocol(ln), Port: userPort,
			Use: selector.DataAndControl, Addrs: userAddrs},
		ASAP:         asapAP,
		ASAPProtocol: asapProtocol(tr),
		Policy:       cfg.policy,
	}
	p.m = newPEMachine(handle, pe, p.regs.list(), cfg.interval, cfg.respTimeout, cfg.respTimeout, time.Now())
	p.regs.onChange = func(l []string) {
		p.mu.Lock()
		p.m.setRegistrars(l)
		outs := p.m.drain()
		p.mu.Unlock()
		p.dispatch(outs)
	}
	if cfg.announces != "" {
		if err := p.regs.listenAnnounces(pctx, cfg.announces, p.log, &p.wg); err != nil {
			p.stop()
			return nil, fmt.Errorf("register %s: %w", handle, err)
		}
	}
	p.wg.Add(2)
	go p.acceptASAP()
	go p.timerLoop()
	p.mu.Lock()
	p.m.start()
	outs := p.m.drain()
	p.mu.Unlock()
	p.dispatch(outs)

	select {
	case <-p.registered:
	case <-ctx.Done():
		p.mu.Lock()
		last := p.lastErr
		p.mu.Unlock()
		p.stop()
		if last != nil {
			return nil, fmt.Errorf("register %s: %w (last failure: %w)", handle, ctx.Err(), last)
		}
		return nil, fmt.Errorf("register %s: %w (registrars %v)", handle, ctx.Err(), p.regs.list())
	}
	p.mu.Lock()
	err = p.firstErr
	p.mu.Unlock()
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("register %s: %w", handle, err)
	}
	return p, nil
}

// listenerProtocol is the transport of the PE's user transport parameter:
// the protocol ln serves on (rsplib refuses a PE whose SCTP listener is
// advertised as TCP, and a pool user must know what it may dial).
func listenerProtocol(ln net.Listener) selector.Protocol {
	switch ln.Addr().Network() {
	case "sctp", "sctp4", "sctp6":
		return selector.SCTP
	case "udp", "udp4", "udp6":
		return selector.UDP
	}
	return selector.TCP
}

// asapProtocol is the kind of the PE's ASAP transport parameter: the
// transport its ASAP endpoint listens on. rsplib refuses a PE whose
// registrator transport is not SCTP ("invalid registrator", 0xf006), also
// in the Handle Updates of a peer.
func asapProtocol(tr transport.Transport) selector.Protocol {
	if tr.Name() == "sctp" {
		return selector.SCTP
	}
	return selector.TCP
}

// listenerAddrs returns the addresses and port of a listener: one address
// for TCP ("ip:port"), every address of a multi-homed SCTP listener
// ("ip1/ip2:port", as package sctp prints them).
func listenerAddrs(a net.Addr) ([]netip.Addr, uint16, error) {
	s := a.String()
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return nil, 0, errors.New("no port")
	}
	port, err := strconv.ParseUint(s[i+1:], 10, 16)
	if err != nil {
		return nil, 0, fmt.Errorf("port: %w", err)
	}
	var addrs []netip.Addr
	for _, h := range strings.Split(s[:i], "/") {
		ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))
		if err != nil {
			return nil, 0, err
		}
		addrs = append(addrs, ip.Unmap())
	}
	return addrs, uint16(port), nil
}

// ID returns the PE identifier.
func (p *PoolElement) ID() uint32 { return p.m.pe.ID }

// Handle returns the pool handle.
func (p *PoolElement) Handle() string { return p.handle }

// Home returns the server ID of the home registrar (0 until its first
// keep-alive says who it is).
func (p *PoolElement) Home() uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.home
}

// Addr returns the listener's address.
func (p *PoolElement) Addr() net.Addr { return p.ln.Addr() }

// SetPolicy changes the policy values (e.g. the load of a least-used
// policy) and re-registers with them at once.
func (p *PoolElement) SetPolicy(s policy.Settings) {
	p.mu.Lock()
	pe := p.m.pe
	pe.Policy = s
	p.m.setPolicy(pe)
	p.mu.Unlock()
	p.poke()
}

func (p *PoolElement) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Accept waits for the next pool user and returns its session. After
// Drain or Close it returns net.ErrClosed.
func (p *PoolElement) Accept() (*Session, error) {
	c, err := p.ln.Accept()
	if err != nil {
		return nil, err
	}
	s := newSession(c)
	s.unaware = p.cfg.unaware
	p.mu.Lock()
	s.self = p.m.pe
	p.mu.Unlock()
	p.mu.Lock()
	p.sessions[s] = struct{}{}
	p.mu.Unlock()
	s.onClose = func() {
		p.mu.Lock()
		delete(p.sessions, s)
		p.mu.Unlock()
		select {
		case p.sessGone <- struct{}{}:
		default:
		}
	}
	return s, nil
}

// Deregister removes the PE from the pool; the listener and open sessions
// stay up. It returns once the home registrar confirmed or ctx ended.
func (p *PoolElement) Deregister(ctx context.Context) error {
	p.mu.Lock()
	p.m.tick(time.Now())
	p.m.deregister()
	outs := p.m.drain()
	p.mu.Unlock()
	p.dispatch(outs)
	p.poke()
	select {
	case <-p.closed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("deregister %s: %w", p.handle, ctx.Err())
	}
}

// Drain is the graceful exit: it deregisters (so new pool users go to other
// PEs), stops accepting, and keeps serving the open sessions until they
// end or ctx ends, when it closes the rest. It returns ctx's error if
// sessions had to be cut.
func (p *PoolElement) Drain(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, p.cfg.respTimeout)
	derr := p.Deregister(dctx)
	cancel()
	if derr != nil {
		p.log.Warn("deregistration unconfirmed", "err", derr)
	}
	p.ln.Close()
	var err error
	for {
		p.mu.Lock()
		n := len(p.sessions)
		p.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-p.sessGone:
			continue
		case <-ctx.Done():
		}
		p.log.Warn("drain deadline: closing open sessions", "sessions", n)
		p.closeSessions()
		err = fmt.Errorf("drain %s: %d sessions cut: %w", p.handle, n, ctx.Err())
		break
	}
	p.stop()
	return err
}

// Close deregisters (waiting at most the response timeout) and closes the
// listener and every session.
func (p *PoolElement) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.respTimeout)
	defer cancel()
	err := p.Deregister(ctx)
	p.ln.Close()
	p.closeSessions()
	p.stop()
	return err
}

// abort stops everything without deregistering, as a crash would (tests).
func (p *PoolElement) abort() {
	p.ln.Close()
	p.closeSessions()
	p.stop()
}

func (p *PoolElement) closeSessions() {
	p.mu.Lock()
	ss := make([]*Session, 0, len(p.sessions))
	for s := range p.sessions {
		ss = append(ss, s)
	}
	p.mu.Unlock()
	for _, s := range ss {
		s.Close()
	}
}

// stop ends the registration machinery: timers, the ASAP listener and the
// registrar connections.
func (p *PoolElement) stop() {
	p.stopOnce.Do(func() {
		p.cancel()
		p.asapLn.Close()
		p.mu.Lock()
		p.m.state = stClosed
		for id, c := range p.links {
			c.Close()
			delete(p.links, id)
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
}

func (p *PoolElement) acceptASAP() {
	defer p.wg.Done()
	for {
		c, err := p.asapLn.Accept(p.ctx)
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p.addLink(c)
	}
}

func (p *PoolElement) addLink(c transport.Conn) linkID {
	p.mu.Lock()
	if p.ctx.Err() != nil {
		p.mu.Unlock()
		c.Close()
		return 0
	}
	p.nextLink++
	id := p.nextLink
	p.links[id] = c
	p.mu.Unlock()
	p.wg.Add(1)
	go p.readLoop(id, c)
	return id
}

func (p *PoolElement) readLoop(id linkID, c transport.Conn) {
	defer p.wg.Done()
	for {
		b, err := c.ReadMessage(p.ctx)
		if err != nil {
			c.Close()
			p.mu.Lock()
			delete(p.links, id)
			p.m.tick(time.Now())
			p.m.linkDown(id)
			outs := p.m.drain()
			p.mu.Unlock()
			p.dispatch(outs)
			return
		}
		in, err := msg.Decode(wire.ASAP, b)
		if err != nil {
			p.log.Debug("message from registrar ignored", "err", err)
			continue
		}
		p.mu.Lock()
		p.m.tick(time.Now())
		p.m.step(id, in)
		outs := p.m.drain()
		p.mu.Unlock()
		p.dispatch(outs)
		p.poke()
	}
}

func (p *PoolElement) timerLoop() {
	defer p.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		p.mu.Lock()
		p.m.tick(time.Now())
		outs := p.m.drain()
		next := p.m.nextDeadline()
		p.mu.Unlock()
		p.dispatch(outs)
		d := time.Hour
		if !next.IsZero() {
			d = max(time.Until(next), time.Millisecond)
		}
		t.Reset(d)
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
	}
}

// dispatch carries out the machine's outputs; it runs without the lock.
func (p *PoolElement) dispatch(outs []peOutput) {
	for _, o := range outs {
		switch {
		case o.Dial != "":
			p.dial(o.Dial)
		case o.Close != 0:
			p.mu.Lock()
			c := p.links[o.Close]
			p.mu.Unlock()
			if c != nil {
				c.Close()
			}
		case o.Msg != nil:
			p.send(o.Link, o.Msg)
		case o.Event != nil:
			p.event(o.Event)
		}
	}
}

func (p *PoolElement) send(l linkID, out msg.Message) {
	p.mu.Lock()
	c := p.links[l]
	p.mu.Unlock()
	if c == nil {
		return
	}
	b, err := msg.Encode(out)
	if err != nil {
		p.log.Error("encode failed", "err", err)
		return
	}
	if err := c.WriteMessage(p.ctx, b); err != nil {
		p.log.Debug("send to registrar failed", "err", err)
		c.Close() // the reader reports the link down
	}
}

func (p *PoolElement) dial(addr string) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithTimeout(p.ctx, p.cfg.dialTimeout)
		c, err := p.tr.Dial(ctx, addr)
		cancel()
		if err != nil {
			p.log.Debug("registrar unreachable", "registrar", addr, "err", err)
			p.mu.Lock()
			p.lastErr = fmt.Errorf("registrar %s unreachable: %w", addr, err)
			p.m.tick(time.Now())
			p.m.dialFailed(addr)
			outs := p.m.drain()
			p.mu.Unlock()
			p.dispatch(outs)
			p.poke()
			return
		}
		var local netip.Addr
		if ap, err := netip.ParseAddrPort(c.LocalAddr().String()); err == nil {
			local = ap.Addr().Unmap()
		}
		id := p.addLink(c)
		if id == 0 {
			return
		}
		p.mu.Lock()
		p.m.tick(time.Now())
		p.m.linkUp(id, local)
		outs := p.m.drain()
		p.mu.Unlock()
		p.log.Debug("connected to registrar", "registrar", addr)
		p.dispatch(outs)
		p.poke()
	}()
}

func (p *PoolElement) event(e *peEvent) {
	switch e.Kind {
	case evRegistered:
		p.mu.Lock()
		since, failures := p.outageSince, p.outageEvents
		p.outageSince, p.outageEvents = time.Time{}, 0
		p.mu.Unlock()
		if !since.IsZero() {
			// The operator saw "registrar unreachable"; say it is over
			// (the new home follows in its own line).
			p.log.Info("registered again: registrar reachable",
				"outage", time.Since(since).Round(time.Millisecond), "failures", failures)
		}
		p.regOnce.Do(func() {
			p.mu.Lock()
			t := p.m.pe.Transport
			p.mu.Unlock()
			p.log.Info("registered", "addrs", fmt.Sprint(t.Addrs), "port", t.Port)
			close(p.registered)
		})
	case evRejected:
		p.log.Warn("registration rejected", "cause", e.Cause.String())
		p.mu.Lock()
		p.firstErr = &RejectError{Cause: e.Cause}
		p.mu.Unlock()
		p.regOnce.Do(func() { close(p.registered) })
		p.closeOnce.Do(func() { close(p.closed) })
	case evHomeChanged:
		p.mu.Lock()
		p.home = e.Home
		p.mu.Unlock()
		p.log.Info("home registrar", "home", wire.FormatID(e.Home))
	case evDeregistered:
		p.log.Info("deregistered")
		p.closeOnce.Do(func() { close(p.closed) })
	case evRegistrarLost:
		p.mu.Lock()
		if p.outageSince.IsZero() {
			p.outageSince = time.Now()
		}
		p.outageEvents++
		p.mu.Unlock()
		if e.Addr != "" {
			p.log.Warn("registrar unreachable", "registrar", e.Addr)
		} else {
			p.log.Warn("lost home registrar, looking for another", "home", wire.FormatID(e.Home))
		}
	}
}
