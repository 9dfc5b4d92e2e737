package asap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
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

// ErrNoPE is wrapped by errors for a pool with no (more) usable PE.
var ErrNoPE = errors.New("no usable pool element")

// PEInfo is one pool element as a handle resolution returns it.
type PEInfo struct {
	ID       uint32
	Home     uint32 // server ID of its home registrar
	Addr     netip.AddrPort
	Addrs    []netip.Addr // every address of its user transport
	Policy   policy.Settings
	Lifetime time.Duration
	// ASAP is the PE's ASAP endpoint (where a registrar taking it over
	// sends keep-alives).
	ASAP netip.AddrPort
	// Protocol is the transport of the PE's user transport: the one a
	// session with it runs over.
	Protocol selector.Protocol
}

// element is p as a Pool Element parameter carries it (a Business Card's).
func (p PEInfo) element() msg.PoolElement {
	addrs := p.Addrs
	if len(addrs) == 0 {
		addrs = []netip.Addr{p.Addr.Addr()}
	}
	proto := p.Protocol
	if proto == 0 {
		proto = selector.TCP
	}
	return msg.PoolElement{ID: p.ID, Home: p.Home, Lifetime: p.Lifetime, ASAP: p.ASAP, Policy: p.Policy,
		Transport: selector.Transport{Addrs: addrs, Port: p.Addr.Port(), Protocol: proto, Use: selector.DataAndControl}}
}

func (p PEInfo) String() string { return fmt.Sprintf("0x%08x@%s", p.ID, p.Addr) }

func peInfo(pe msg.PoolElement) PEInfo {
	i := PEInfo{ID: pe.ID, Home: pe.Home, Addrs: pe.Transport.Addrs, Policy: pe.Policy,
		Lifetime: pe.Lifetime, ASAP: pe.ASAP, Protocol: pe.Transport.Protocol}
	if len(pe.Transport.Addrs) > 0 {
		i.Addr = netip.AddrPortFrom(pe.Transport.Addrs[0], pe.Transport.Port)
	}
	return i
}

// PoolUser resolves pool handles through registrars, caches the answers
// and opens sessions to pool elements. It is safe for concurrent use.
type PoolUser struct {
	cfg  config
	tr   transport.Transport
	regs *registrarSet

	reqMu sync.Mutex // one request/response at a time on conn
	conn  transport.Conn
	addr  string

	mu    sync.Mutex
	cache map[string]*cacheEntry

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type cacheEntry struct {
	pes    []PEInfo
	at     time.Time
	cursor int
}

// NewPoolUser returns a pool user with the given options (WithRegistrars
// or WithAnnounces, WithCacheStaleness, ...).
func NewPoolUser(opts ...Option) (*PoolUser, error) {
	cfg := newConfig(opts)
	if err := validateAddrs(cfg.registrars); err != nil {
		return nil, err
	}
	if len(cfg.registrars) == 0 && cfg.announces == "" {
		return nil, ErrNoRegistrar
	}
	tr, err := cfg.asapTransport()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	u := &PoolUser{cfg: cfg, tr: tr, regs: &registrarSet{addrs: append([]string(nil), cfg.registrars...)},
		cache: map[string]*cacheEntry{}, ctx: ctx, cancel: cancel}
	if cfg.announces != "" {
		if err := u.regs.listenAnnounces(ctx, cfg.announces, cfg.log, &u.wg); err != nil {
			cancel()
			return nil, err
		}
	}
	return u, nil
}

// Close closes the registrar connection and the announce listener.
func (u *PoolUser) Close() error {
	u.cancel()
	u.reqMu.Lock()
	if u.conn != nil {
		u.conn.Close()
		u.conn = nil
	}
	u.reqMu.Unlock()
	u.wg.Wait()
	return nil
}

// request sends req to a registrar and returns its answer of type want,
// trying the known registrars in turn.
func (u *PoolUser) request(ctx context.Context, req msg.Message, want func(msg.Message) bool) (msg.Message, error) {
	b, err := msg.Encode(req)
	if err != nil {
		return nil, err
	}
	u.reqMu.Lock()
	defer u.reqMu.Unlock()
	var errs []error
	regs := u.regs.list()
	if len(regs) == 0 {
		return nil, ErrNoRegistrar
	}
	for attempt := 0; attempt <= len(regs); attempt++ {
		if ctx.Err() != nil {
			break
		}
		if u.conn == nil {
			a := regs[attempt%len(regs)]
			dctx, cancel := context.WithTimeout(ctx, u.cfg.dialTimeout)
			c, err := u.tr.Dial(dctx, a)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("registrar %s unreachable: %w", a, err))
				continue
			}
			u.conn, u.addr = c, a
		}
		rctx, cancel := context.WithTimeout(ctx, u.cfg.respTimeout)
		resp, err := u.exchange(rctx, b, want)
		cancel()
		if err == nil {
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("registrar %s: %w", u.addr, portHint(u.addr, transport.ASAP, err)))
		u.conn.Close()
		u.conn = nil
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return nil, errors.Join(errs...)
}

func (u *PoolUser) exchange(ctx context.Context, b []byte, want func(msg.Message) bool) (msg.Message, error) {
	if err := u.conn.WriteMessage(ctx, b); err != nil {
		return nil, err
	}
	if want == nil {
		return nil, nil
	}
	for {
		rb, err := u.conn.ReadMessage(ctx)
		if err != nil {
			return nil, err
		}
		m, err := msg.Decode(wire.ASAP, rb)
		if err != nil {
			continue
		}
		if want(m) {
			return m, nil
		}
	}
}

// Resolve asks a registrar for the pool's PEs (bypassing the cache, but
// refreshing it).
func (u *PoolUser) Resolve(ctx context.Context, handle string) ([]PEInfo, error) {
	return u.resolve(ctx, handle, 0)
}

// resolveAll is the Handle Resolution option value asking for every PE.
const resolveAll = 0xffffffff

// resolve asks for up to items PEs (0: the registrar's default number).
func (u *PoolUser) resolve(ctx context.Context, handle string, items uint32) ([]PEInfo, error) {
	resp, err := u.request(ctx, msg.HandleResolution{Handle: handle, MaxItems: items}, func(m msg.Message) bool {
		r, ok := m.(msg.HandleResolutionResponse)
		return ok && r.Handle == handle
	})
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", handle, err)
	}
	r := resp.(msg.HandleResolutionResponse)
	if r.Cause != 0 {
		u.mu.Lock()
		delete(u.cache, handle)
		u.mu.Unlock()
		return nil, fmt.Errorf("resolve %s: %s: %w", handle, r.Cause, ErrNoPE)
	}
	pes := make([]PEInfo, 0, len(r.PEs))
	for _, pe := range r.PEs {
		pes = append(pes, peInfo(pe))
	}
	u.mu.Lock()
	u.cache[handle] = &cacheEntry{pes: pes, at: time.Now()}
	u.mu.Unlock()
	return pes, nil
}

// ReportUnreachable tells a registrar that a PE did not answer and drops it
// from the cache.
func (u *PoolUser) ReportUnreachable(ctx context.Context, handle string, id uint32) error {
	u.forget(handle, id)
	if _, err := u.request(ctx, msg.EndpointUnreachable{Handle: handle, PEID: id}, nil); err != nil {
		return fmt.Errorf("report PE 0x%08x of %s unreachable: %w", id, handle, err)
	}
	return nil
}

func (u *PoolUser) forget(handle string, id uint32) {
	u.mu.Lock()
	defer u.mu.Unlock()
	e := u.cache[handle]
	if e == nil {
		return
	}
	for i, p := range e.pes {
		if p.ID == id {
			e.pes = append(e.pes[:i:i], e.pes[i+1:]...)
			break
		}
	}
}

// pick selects a PE of handle not in exclude: from the cache while it is
// fresh, else from a new resolution. The registrar returns PEs ordered by
// the pool's policy; for the rotating policies (round robin, random) the
// cache hands them out in turn, for the others the best one first.
func (u *PoolUser) pick(ctx context.Context, handle string, exclude map[uint32]bool) (PEInfo, error) {
	if p, ok := u.fromCache(handle, exclude, true); ok {
		return p, nil
	}
	if _, err := u.Resolve(ctx, handle); err != nil {
		return PEInfo{}, err
	}
	if p, ok := u.fromCache(handle, exclude, false); ok {
		return p, nil
	}
	// The registrar's usual few are all PEs that failed us (hung ones stay
	// registered while they answer keep-alives): ask for the whole pool.
	if _, err := u.resolve(ctx, handle, resolveAll); err != nil {
		return PEInfo{}, err
	}
	if p, ok := u.fromCache(handle, exclude, false); ok {
		return p, nil
	}
	return PEInfo{}, fmt.Errorf("pool %s: every PE returned failed: %w", handle, ErrNoPE)
}

func (u *PoolUser) fromCache(handle string, exclude map[uint32]bool, needFresh bool) (PEInfo, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	e := u.cache[handle]
	if e == nil || len(e.pes) == 0 || (needFresh && time.Since(e.at) > u.cfg.staleness) {
		return PEInfo{}, false
	}
	n := len(e.pes)
	for i := 0; i < n; i++ {
		p := e.pes[(e.cursor+i)%n]
		if exclude[p.ID] {
			continue
		}
		if rotates(p.Policy.Type) {
			e.cursor = (e.cursor + i + 1) % n
		}
		return p, true
	}
	return PEInfo{}, false
}

func rotates(t policy.Type) bool {
	switch t {
	case policy.TypeRoundRobin, policy.TypeWeightedRoundRobin, policy.TypeRandom, policy.TypeWeightedRandom:
		return true
	}
	return false
}

// FailoverEvent reports that a Conn moved from one PE to another.
type FailoverEvent struct {
	From, To PEInfo
	// Err is what made the old PE fail.
	Err error
	// Took is the time from noticing the failure to the new PE's session.
	Took time.Duration
	// CookieEchoed says the old PE's last cookie was sent to the new one.
	CookieEchoed bool
}

func (e FailoverEvent) String() string {
	return fmt.Sprintf("failover from PE %s to PE %s after %v (cookie echoed: %v): %v", e.From, e.To, e.Took.Round(time.Microsecond), e.CookieEchoed, e.Err)
}

// FailoverError is returned by a Conn's Read or Write that was interrupted
// by a failover: the operation did not complete on the old PE, the Conn is
// now on the new one and the operation may be retried.
type FailoverError struct{ Event FailoverEvent }

func (e *FailoverError) Error() string { return e.Event.String() }

// Unwrap returns the old PE's failure.
func (e *FailoverError) Unwrap() error { return e.Event.Err }

// Conn is a pool user's session with a pool: a net.Conn whose PE may
// change. See the package documentation for how failover shows.
type Conn struct {
	u      *PoolUser
	ownsU  bool
	handle string

	mu     sync.Mutex
	sess   *Session
	pe     PEInfo
	gen    int
	failed map[uint32]bool
	last   *FailoverEvent
	broken error
	closed bool

	cmu    sync.Mutex
	cookie []byte

	events chan FailoverEvent
}

// Dial resolves handle and opens a session to one of its PEs.
func Dial(ctx context.Context, handle string, opts ...Option) (*Conn, error) {
	u, err := NewPoolUser(opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", handle, err)
	}
	c, err := u.Dial(ctx, handle)
	if err != nil {
		u.Close()
		return nil, err
	}
	c.ownsU = true
	return c, nil
}

// Dial opens a session to a PE of handle.
func (u *PoolUser) Dial(ctx context.Context, handle string) (*Conn, error) {
	c := &Conn{u: u, handle: handle, failed: map[uint32]bool{}, events: make(chan FailoverEvent, 16)}
	var errs []error
	for i := 0; i < max(u.cfg.maxFailovers, 1); i++ {
		pe, err := u.pick(ctx, handle, c.failed)
		if err != nil {
			errs = append(errs, err)
			break
		}
		s, err := c.open(ctx, pe, nil)
		if err != nil {
			errs = append(errs, err)
			c.failed[pe.ID] = true
			if !errors.Is(err, ErrUnusableTransport) {
				u.reportAsync(handle, pe.ID)
			}
			continue
		}
		c.sess, c.pe = s, pe
		return c, nil
	}
	return nil, fmt.Errorf("dial %s: %w", handle, errors.Join(errs...))
}

func (u *PoolUser) reportAsync(handle string, id uint32) {
	u.forget(handle, id)
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		ctx, cancel := context.WithTimeout(u.ctx, u.cfg.respTimeout)
		defer cancel()
		if err := u.ReportUnreachable(ctx, handle, id); err != nil {
			u.cfg.log.Debug("endpoint unreachable not reported", "err", err)
		}
	}()
}

// ErrUnusableTransport: a PE serves its pool over a transport this pool
// user cannot open a session on. That says nothing about the PE's health,
// so the PE is skipped, never reported unreachable (a report would have
// the registrars remove a live PE).
var ErrUnusableTransport = errors.New("the PE's transport is not one this pool user can use")

func (c *Conn) open(ctx context.Context, pe PEInfo, cookie []byte) (*Session, error) {
	dctx, cancel := context.WithTimeout(ctx, c.u.cfg.dialTimeout)
	defer cancel()
	var nc net.Conn
	var err error
	switch pe.Protocol {
	case selector.TCP, 0:
		var d net.Dialer
		nc, err = d.DialContext(dctx, "tcp", pe.Addr.String())
	case selector.SCTP:
		// The session layer rsplib speaks: data and ASAP multiplexed
		// by PPID on one association.
		if serr := transport.SCTPSupported(); serr != nil {
			return nil, fmt.Errorf("PE %s: %w (%v)", pe, ErrUnusableTransport, serr)
		}
		nc, err = transport.DialSession(dctx, sctpAddr(pe))
	default:
		return nil, fmt.Errorf("PE %s: %s: %w", pe, pe.Protocol, ErrUnusableTransport)
	}
	if err != nil {
		return nil, fmt.Errorf("PE %s: %w", pe, err)
	}
	s := newSession(nc)
	s.onControl = func(m *wire.Message) {
		if m.Type == wire.ASAPCookie {
			if p := m.Param(wire.ParamCookie); p != nil {
				c.cmu.Lock()
				c.cookie = append([]byte(nil), p.Cookie...)
				c.cmu.Unlock()
			}
		}
	}
	if cookie != nil {
		if err := s.sendCookieEcho(cookie); err != nil {
			nc.Close()
			return nil, fmt.Errorf("PE %s: cookie echo: %w", pe, err)
		}
	}
	return s, nil
}

// sctpAddr is a PE's user transport as package sctp resolves it: every
// address of a multi-homed PE, "ip1/ip2:port".
func sctpAddr(pe PEInfo) string {
	addrs := pe.Addrs
	if len(addrs) == 0 {
		addrs = []netip.Addr{pe.Addr.Addr()}
	}
	var b strings.Builder
	for i, a := range addrs {
		if i > 0 {
			b.WriteByte('/')
		}
		if a.Is6() {
			b.WriteString("[" + a.String() + "]")
		} else {
			b.WriteString(a.String())
		}
	}
	return b.String() + ":" + strconv.Itoa(int(pe.Addr.Port()))
}

// Failovers delivers every failover of the Conn (buffered; events are
// dropped if nobody reads and the buffer is full). It is closed by Close.
func (c *Conn) Failovers() <-chan FailoverEvent { return c.events }

// PE returns the pool element the Conn is on.
func (c *Conn) PE() PEInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pe
}

// Cookie returns the last ASAP Cookie a PE sent on this Conn.
func (c *Conn) Cookie() []byte {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	return c.cookie
}

// BusinessCard returns the pool handle the current PE named in a Business
// Card, or "".
func (c *Conn) BusinessCard() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess.lastBusinessCard()
}

func (c *Conn) current() (*Session, int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, 0, net.ErrClosed
	}
	if c.broken != nil {
		return nil, 0, c.broken
	}
	return c.sess, c.gen, nil
}

// Read reads application bytes from the current PE. After a failover it
// returns a *FailoverError once; read again to continue on the new PE.
func (c *Conn) Read(p []byte) (int, error) {
	s, gen, err := c.current()
	if err != nil {
		return 0, err
	}
	n, err := s.Read(p)
	if err == nil || n > 0 || errors.Is(err, os.ErrDeadlineExceeded) {
		return n, err
	}
	return 0, c.failover(gen, err)
}

// Write writes application bytes to the current PE. If the PE fails it
// fails over and returns a *FailoverError; the bytes may not have reached
// the old PE and are not resent: write them again.
func (c *Conn) Write(p []byte) (int, error) {
	s, gen, err := c.current()
	if err != nil {
		return 0, err
	}
	n, err := s.Write(p)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return n, err
	}
	return 0, c.failover(gen, err)
}

// Failover abandons the current PE (e.g. it stopped answering within the
// application's timeout) and moves to another, as a failed Read would.
func (c *Conn) Failover(reason error) error {
	_, gen, err := c.current()
	if err != nil {
		return err
	}
	return c.failover(gen, reason)
}

func (c *Conn) failover(gen int, cause error) error {
	start := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	if c.broken != nil {
		return c.broken
	}
	if c.gen != gen && c.last != nil {
		return &FailoverError{Event: *c.last}
	}
	old := c.pe
	handle := c.handle
	if bc := c.sess.lastBusinessCard(); bc != "" {
		handle = bc
	}
	card := c.sess.lastCardPEs()
	c.sess.Close()
	c.failed[old.ID] = true
	c.u.reportAsync(c.handle, old.ID)
	cookie := c.Cookie()
	ctx, cancel := context.WithTimeout(c.u.ctx, c.u.cfg.respTimeout+c.u.cfg.dialTimeout)
	defer cancel()
	var errs []error
	for i := 0; i < max(c.u.cfg.maxFailovers, 1); i++ {
		// The PEs the old one named in its Business Card first, then
		// the pool's.
		var pe PEInfo
		var err error
		for len(card) > 0 && (c.failed[card[0].ID] || card[0].ID == old.ID) {
			card = card[1:]
		}
		if len(card) > 0 {
			pe, card = card[0], card[1:]
		} else if pe, err = c.u.pick(ctx, handle, c.failed); err != nil {
			errs = append(errs, err)
			break
		}
		s, err := c.open(ctx, pe, cookie)
		if err != nil {
			errs = append(errs, err)
			c.failed[pe.ID] = true
			if !errors.Is(err, ErrUnusableTransport) {
				c.u.reportAsync(handle, pe.ID)
			}
			continue
		}
		ev := FailoverEvent{From: old, To: pe, Err: cause, Took: time.Since(start), CookieEchoed: cookie != nil}
		c.sess, c.pe, c.last = s, pe, &ev
		c.gen++
		c.u.cfg.log.Info("failover", "pool", handle, "from", old.String(), "to", pe.String(), "took", ev.Took, "cause", cause)
		select {
		case c.events <- ev:
		default:
		}
		return &FailoverError{Event: ev}
	}
	c.broken = fmt.Errorf("failover from PE %s of %s (after %v): %w", old, handle, cause, errors.Join(errs...))
	return c.broken
}

// Close closes the session (and the pool user if Dial made it).
func (c *Conn) Close() error {
	c.mu.Lock()
	if !c.closed {
		// Failovers send under c.mu and only while open, so no send can
		// race this close.
		c.closed = true
		close(c.events)
	}
	s := c.sess
	c.mu.Unlock()
	err := s.Close()
	if c.ownsU {
		c.u.Close()
	}
	return err
}

// LocalAddr returns the local address of the current session.
func (c *Conn) LocalAddr() net.Addr { c.mu.Lock(); defer c.mu.Unlock(); return c.sess.LocalAddr() }

// RemoteAddr returns the current PE's address.
func (c *Conn) RemoteAddr() net.Addr { c.mu.Lock(); defer c.mu.Unlock(); return c.sess.RemoteAddr() }

// SetDeadline sets the deadlines of the current session.
func (c *Conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess.SetDeadline(t)
}

// SetReadDeadline sets the read deadline of the current session.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline of the current session.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess.SetWriteDeadline(t)
}
