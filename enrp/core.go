package enrp

import (
	"container/heap"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"time"

	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/wire"
)

// LinkID names one connection (ASAP or ENRP) the driver holds. The core
// never touches connections; it answers on links by ID.
type LinkID uint64

// Output is something the core wants sent.
type Output struct {
	// Link to send on. For PE messages it may be 0 or already gone; the
	// driver then dials Dial (the PE's ASAP address).
	Link LinkID
	Dial netip.AddrPort
	// Peer is the receiving server ID for ENRP messages (informational; the
	// link decides where it goes). ConnectPeer asks the driver to open an
	// ENRP connection to Dial (a peer learned from a List Response).
	Peer        uint32
	ConnectPeer bool
	// Announce: send Msg as a UDP server announce (ASAP Server Announce,
	// or with PeerAnnounce an ENRP Presence for peer discovery).
	Announce     bool
	PeerAnnounce bool
	Msg          Message
}

type timerKind uint8

const (
	timerNone      timerKind = iota
	timerKASend              // send the next keep-alive
	timerKATimeout           // keep-alive unanswered: remove
)

type timerEntry struct {
	at  time.Time
	key peKey
	gen uint64
}

type timerHeap []timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// peer is another registrar.
type peer struct {
	id       uint32
	link     LinkID
	info     ServerInfo
	lastHard time.Time // last message heard
	// noRespDeadline is set when a Presence with the reply flag went out
	// because the peer was silent past max-time-last-heard.
	noRespDeadline time.Time
	dead           bool
	leaving        bool // it sent a Presence with the Leaving flag
	// takeover: our own takeover of this peer in progress.
	takeover *takeover
	// ackedFor is the server we agreed may take this peer over, and when.
	ackedFor uint32
	ackedAt  time.Time
	// takeoverAt: our deferred takeover of this dead peer starts then,
	// unless another registrar's came first (takeoverOrDefer).
	takeoverAt time.Time
	// handle table being served to this peer in chunks.
	htKeys     []peKey
	htOwnOnly  bool
	htServedAt time.Time
	// audit/sync requested from this peer and not yet complete.
	reqPending bool
	reqOwnOnly bool
	reqSeen    map[peKey]bool
	reqSentAt  time.Time
	mismatches int // consecutive presences whose checksum differed from ours
	// auditWant is the peer's checksum the last audit should reach;
	// audited says it completed and the next Presence judges it;
	// auditFails counts audits in a row that did not (we refused some of
	// its PEs), and auditNext is when the next may start (back-off).
	auditWant  uint16
	audited    bool
	auditFails int
	auditNext  time.Time
}

type takeover struct {
	acks    map[uint32]bool // outstanding
	expires time.Time
}

// Core is the registrar as a pure state machine: Step feeds it one
// message from a link, Tick advances its clock; both append what must be
// sent to the outbox, which Drain returns. It does no I/O and reads no
// clock, so every exchange is testable without sleeps. It is not safe for
// concurrent use; the Server serialises calls.
type Core struct {
	cfg    Config
	log    *slog.Logger
	now    time.Time
	hs     *selector.Handlespace
	owned  map[peKey]*peState // PEs we are home registrar for
	gen    uint64
	timers timerHeap
	peers  map[uint32]*peer
	// observers are senders of Handle Table Requests that are not peers
	// (operators' dump tools): only their table transfers are kept.
	observers map[uint32]*peer
	links     map[LinkID]uint32 // ENRP link -> peer id once known
	// probes are the ENRP links we opened (static or learned peers): they
	// get a Presence every heartbeat even while their peer is unknown or
	// considered dead, so a healed partition or restarted peer is found.
	probes map[LinkID]bool
	// linkPEs counts the owned PEs per link (LinkInUse); dialled holds
	// the ASAP endpoint of each link the driver opened to a PE.
	linkPEs map[LinkID]int
	dialled map[LinkID]netip.AddrPort
	out     []Output
	counts  Counters
	// resolved is Resolve's scratch selection, reused across calls.
	resolved []selector.PoolElement

	leave     leaveState               // graceful leave (leave.go)
	forwarded map[peKey]*forwardWindow // unreachable reports passed on

	// awayFrom and recoverUntil: after a stall (ownership.go); held: the
	// updates about our PEs held back until then.
	awayFrom, recoverUntil time.Time
	held                   map[peKey]HandleUpdate

	synced       bool // mentor sync done (or nothing to sync from)
	mentor       uint32
	nextPresence time.Time
	nextAnnounce time.Time
	// Announce enables ASAP Server Announces; PeerAnnounce enables ENRP
	// Presence announces for peer discovery (both set by the driver).
	Announce     bool
	PeerAnnounce bool
}

// NewCore returns a registrar core starting at now.
func NewCore(cfg Config, now time.Time) (*Core, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Core{
		cfg:          cfg,
		log:          cfg.Logger.With("registrar", idString(cfg.ID)),
		now:          now,
		owned:        map[peKey]*peState{},
		peers:        map[uint32]*peer{},
		observers:    map[uint32]*peer{},
		links:        map[LinkID]uint32{},
		probes:       map[LinkID]bool{},
		linkPEs:      map[LinkID]int{},
		dialled:      map[LinkID]netip.AddrPort{},
		nextPresence: now,
		nextAnnounce: now,
	}
	hs, err := selector.New(selector.Config{
		MaxHandleResolutionItems: cfg.MaxResolutionItems,
		MaxIncrement:             cfg.MaxIncrement,
		MaxBadPEReports:          cfg.MaxBadPEReports,
		MaxPoolElements:          cfg.MaxPEs,
		MaxPools:                 cfg.MaxPools,
		MaxPoolElementsPerPool:   cfg.MaxPEsPerPool,
		DrainTimeout:             cfg.DrainTimeout,
		Seed:                     cfg.Seed,
		OnExpire: func(handle string, el selector.PoolElement) {
			c.log.Warn("PE expired", "pool", handle, "pe", idString(el.ID), "owner", idString(el.Home))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("new registrar %s: %w", idString(cfg.ID), err)
	}
	c.hs = hs
	return c, nil
}

// Handlespace returns the registrar's handlespace: the node subscribes to
// its events to program the data plane. Callers must not modify it.
func (c *Core) Handlespace() *selector.Handlespace { return c.hs }

// ID returns the server identifier.
func (c *Core) ID() uint32 { return c.cfg.ID }

// Config returns the effective configuration (defaults filled in).
func (c *Core) Config() Config { return c.cfg }

// Drain returns and clears the outbox.
func (c *Core) Drain() []Output {
	o := c.out
	c.out = nil
	return o
}

func (c *Core) send(o Output) { c.out = append(c.out, o) }

// Checksum returns this registrar's view of the checksum over the PEs that
// owner owns.
func (c *Core) Checksum(owner uint32) uint16 { return c.hs.Checksum(owner) }

// Count returns the number of active PEs in the handlespace.
func (c *Core) Count() int { return c.hs.Len() }

// Snapshot returns the active handlespace, pools sorted by handle and PEs
// by identifier: what `rspxdp status` prints.
func (c *Core) Snapshot() []Pool {
	var out []Pool
	c.hs.Range(func(handle string, el selector.PoolElement) bool {
		if len(out) == 0 || out[len(out)-1].Handle != handle {
			out = append(out, Pool{Handle: handle})
		}
		last := &out[len(out)-1]
		last.PEs = append(last.PEs, fromSel(el, c.lifetimeOf(handle, el.ID)))
		return true
	})
	return out
}

// Peers returns the server IDs of the peers currently considered alive.
func (c *Core) Peers() []uint32 {
	var ids []uint32
	for id, p := range c.peers {
		if !p.dead {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// schedule (re)arms the single timer of a PE.
func (c *Core) schedule(s *peState, kind timerKind, at time.Time) {
	c.gen++
	s.gen = c.gen
	s.timer = kind
	heap.Push(&c.timers, timerEntry{at: at, key: s.key, gen: s.gen})
}

// stale reports whether a timer entry no longer matches an armed timer.
func (c *Core) stale(e timerEntry) (*peState, bool) {
	s := c.owned[e.key]
	return s, s == nil || s.gen != e.gen
}

// NextDeadline returns when Tick must next be called.
func (c *Core) NextDeadline() time.Time {
	if c.leave.active {
		return c.now.Add(time.Hour) // quiet until closed
	}
	next := c.nextPresence
	if c.Announce && c.nextAnnounce.Before(next) {
		next = c.nextAnnounce
	}
	for len(c.timers) > 0 {
		e := c.timers[0]
		if _, stale := c.stale(e); stale {
			heap.Pop(&c.timers)
			continue
		}
		if e.at.Before(next) {
			next = e.at
		}
		break
	}
	if t, ok := c.hs.NextDeadline(); ok && t.Before(next) {
		next = t
	}
	for _, p := range c.peers {
		for _, t := range []time.Time{p.noRespDeadline, p.lastHard.Add(c.cfg.PeerMaxTimeLastHeard)} {
			if !p.dead && !t.IsZero() && t.Before(next) {
				next = t
			}
		}
		if p.takeover != nil && p.takeover.expires.Before(next) {
			next = p.takeover.expires
		}
	}
	return next
}

// SetNow advances the clock without firing timers: the driver calls it
// before Step so new timers are armed from the current time, and leaves
// firing to Tick.
func (c *Core) SetNow(now time.Time) { c.advance(now) }

// Tick advances the clock to now and fires every timer due.
func (c *Core) Tick(now time.Time) {
	c.advance(now)
	if c.leave.active {
		return
	}
	for len(c.timers) > 0 && !c.timers[0].at.After(c.now) {
		e := heap.Pop(&c.timers).(timerEntry)
		if s, stale := c.stale(e); !stale {
			c.fire(s)
		}
	}
	c.hs.Sweep(c.now)
	if !c.nextPresence.After(c.now) {
		c.broadcastPresence(false)
		c.probe()
		if c.PeerAnnounce {
			c.send(Output{Announce: true, PeerAnnounce: true, Msg: c.presence(0, false)})
		}
		c.nextPresence = c.now.Add(c.cfg.PeerHeartbeatCycle)
	}
	if c.Announce && !c.nextAnnounce.After(c.now) {
		c.send(Output{Announce: true, Msg: ServerAnnounce{ServerID: c.cfg.ID, ASAP: []netip.AddrPort{c.cfg.ASAP}, Protocol: c.cfg.Transport}})
		c.nextAnnounce = c.now.Add(c.cfg.AnnounceInterval)
	}
	c.checkPeers()
}

func (c *Core) fire(s *peState) {
	switch s.timer {
	case timerKASend:
		c.sendKeepAlive(s, false)
	case timerKATimeout:
		c.log.Warn("PE removed: keep-alive timeout", "pool", s.key.handle, "pe", idString(s.key.id))
		c.counts.KeepAliveFailures++
		c.removeOwned(s.key, selector.ReasonKeepAlive)
	}
}

func (c *Core) sendKeepAlive(s *peState, home bool) {
	c.send(Output{Link: s.link, Dial: s.asap, Msg: EndpointKeepAlive{
		ServerID: c.cfg.ID, Handle: s.key.handle, PEID: s.key.id, Home: home,
	}})
	s.awaitingAck = true
	c.schedule(s, timerKATimeout, c.now.Add(c.cfg.KeepAliveTimeout))
}

// removeOwned removes one of our PEs and replicates the delete.
func (c *Core) removeOwned(k peKey, reason selector.Reason) {
	pe, ok := c.lookup(k.handle, k.id)
	c.unown(k)
	if !ok {
		return
	}
	if reason == selector.ReasonDeregistered {
		_, _ = c.hs.Deregister(k.handle, k.id, c.now)
	} else {
		_, _ = c.hs.Remove(k.handle, k.id, reason)
	}
	c.replicate(HandleUpdate{Action: DelPE, Handle: k.handle, PE: clonePE(pe), Drain: reason == selector.ReasonDeregistered})
}

// toAllPeers sends one message per live peer with its receiver ID filled in.
func (c *Core) toAllPeers(mk func(Header) Message) {
	for _, id := range c.Peers() {
		p := c.peers[id]
		if p.link == 0 {
			continue
		}
		c.send(Output{Link: p.link, Peer: id, Msg: mk(Header{Sender: c.cfg.ID, Receiver: id})})
	}
}

func (c *Core) toPeer(p *peer, m Message) {
	c.send(Output{Link: p.link, Peer: p.id, Msg: m})
}

func (c *Core) presence(receiver uint32, reply bool) Presence {
	return Presence{
		Header:   Header{Sender: c.cfg.ID, Receiver: receiver},
		Reply:    reply,
		Checksum: c.hs.Checksum(c.cfg.ID),
		Info:     ServerInfo{ID: c.cfg.ID, ENRP: c.cfg.ENRP, ASAP: c.cfg.ASAP, Protocol: c.cfg.Transport},
	}
}

func (c *Core) broadcastPresence(reply bool) {
	c.toAllPeers(func(h Header) Message { return c.presence(h.Receiver, reply) })
}

// LinkUp tells the core an ENRP connection to a peer is open (dialled by
// us); it introduces itself with a Presence asking for a reply, which
// reveals the peer's server ID.
func (c *Core) LinkUp(link LinkID) {
	c.probes[link] = true
	c.send(Output{Link: link, Msg: c.presence(0, true)})
}

// probe sends a Presence asking for a reply on every link we opened whose
// peer is not a live peer.
func (c *Core) probe() {
	for l := range c.probes {
		if p := c.peers[c.links[l]]; p == nil || p.dead {
			c.send(Output{Link: l, Msg: c.presence(c.links[l], true)})
		}
	}
}

// Discovered reports a Presence announce heard over UDP: an unknown (or
// dead) registrar is connected to, the connection then introduces us.
func (c *Core) Discovered(info ServerInfo) {
	if info.ID == 0 || info.ID == c.cfg.ID || !info.ENRP.IsValid() {
		return
	}
	if p := c.peers[info.ID]; p != nil && !p.dead && p.link != 0 {
		return
	}
	c.send(Output{ConnectPeer: true, Dial: info.ENRP, Peer: info.ID})
}

// LinkDown tells the core a connection closed. PEs keep their state (the
// next keep-alive dials them); peers are judged by their timers, not by
// one connection.
func (c *Core) LinkDown(link LinkID) {
	delete(c.probes, link)
	delete(c.dialled, link)
	if id, ok := c.links[link]; ok {
		delete(c.links, link)
		if p := c.peers[id]; p != nil && p.link == link {
			p.link = 0
		}
	}
	for _, s := range c.owned {
		if c.linkPEs[link] == 0 {
			break
		}
		if s.link == link {
			c.setLink(s, 0)
		}
	}
}

// LinkAborted tells the core a connection ended by an abort or a reset
// (SCTP ABORT or COMM_LOST, TCP RST) rather than a shutdown: evidence that
// the PEs registered on it are gone, so they are removed at once, as rsplib
// removes them, instead of at the next keep-alive timeout. Keep-alives
// remain the path for PEs that die silently. Then it is LinkDown.
func (c *Core) LinkAborted(link LinkID) {
	if c.linkPEs[link] > 0 {
		for k, s := range c.owned {
			if s.link != link {
				continue
			}
			c.log.Info("PE removed: its association was aborted", "pool", k.handle, "pe", idString(k.id))
			c.counts.AbortRemovals++
			c.removeOwned(k, selector.ReasonKeepAlive)
		}
	}
	c.LinkDown(link)
}

// Counters count what the registrar did since it started: the operator's
// view of registrations, failures and takeovers (the node exports them to
// Prometheus).
type Counters struct {
	// Registrations of new PEs, Reregistrations of known ones, and
	// RegistrationsRejected with any cause.
	Registrations, Reregistrations, RegistrationsRejected uint64
	// Deregistrations accepted.
	Deregistrations uint64
	// KeepAliveFailures: owned PEs removed for a missed keep-alive;
	// UnreachableRemovals: for too many Endpoint Unreachable reports.
	KeepAliveFailures, UnreachableRemovals uint64
	// AbortRemovals: owned PEs removed because the association they
	// registered on was aborted or reset.
	AbortRemovals uint64
	// AuditsNotConverged: audits of a peer's PEs after which the
	// checksums still differed (this registrar refused some of them);
	// each is followed by a longer back-off before the next.
	AuditsNotConverged uint64
	// UnreachableForwarded: reports on peers' PEs passed on to their home.
	UnreachableForwarded uint64
	// Resolutions answered, of which ResolutionsFailed named no PE.
	Resolutions, ResolutionsFailed uint64
	// Takeovers this registrar completed and the PEs they adopted.
	Takeovers, TakeoverAdoptedPEs uint64
	// Unrecognized messages (or unknown parameters) answered with an Error.
	Unrecognized uint64
	// ForeignAcks: keep-alive acks ignored for arriving on another
	// association than the PE's own.
	ForeignAcks uint64
	// PeersRefused: ENRP messages whose sender was not admitted as a
	// peer (no valid Presence, table full, another peer's connection).
	PeersRefused uint64
	// OwnershipYielded: PEs we owned and gave up to a newer claim;
	// PolicyConflicts: replicated PEs whose policy differed from their
	// pool's; Stalls: times this registrar found it had been stalled.
	OwnershipYielded, PolicyConflicts, Stalls uint64
	// StaleRegistrations: registrations that queued while we were
	// stalled, ignored because the PE had moved on.
	StaleRegistrations uint64
	// The Server's connection counters (conns.go): accept failures (e.g.
	// out of descriptors), connections refused at a bound, evicted to make
	// room, closed for a full send queue or for sending nothing in time.
	AcceptErrors, ConnectionsRefused, ConnectionsEvicted uint64
	QueueOverflows, FirstMessageTimeouts                 uint64
	// IdleClosed: connections serving nothing closed after IdleTimeout.
	IdleClosed uint64
	// WrongProtocol: connections closed for speaking the other protocol;
	// RepliesSuppressed: answers to broken messages over the rate limit.
	WrongProtocol, RepliesSuppressed uint64
	// Goroutines is the process's goroutine count when read.
	Goroutines uint64
	// RejectedByCause splits RegistrationsRejected by the cause sent back,
	// indexed by the cause code (an array, so a copy of Counters shares
	// nothing with the core); causes past its end count at index 0.
	RejectedByCause [16]uint64
}

// Counters returns the registrar's counters.
func (c *Core) Counters() Counters { return c.counts }

// Step processes one message received on link from src.
func (c *Core) Step(link LinkID, src netip.Addr, m Message) {
	if c.leave.active && c.stepLeaving(m) {
		return
	}
	switch m := m.(type) {
	case Registration:
		c.onRegistration(link, src, m)
	case Deregistration:
		c.onDeregistration(link, src, m)
	case HandleResolution:
		r := c.Resolve(m)
		c.counts.Resolutions++
		if r.Cause != 0 {
			c.counts.ResolutionsFailed++
		}
		c.send(Output{Link: link, Msg: r})
	case EndpointKeepAliveAck:
		c.onKeepAliveAck(link, m)
	case EndpointUnreachable:
		c.onUnreachable(m)
	case Presence:
		c.onPresence(link, m)
	case HandleTableRequest:
		c.onHandleTableRequest(link, m)
	case HandleTableResponse:
		c.onHandleTableResponse(link, m)
	case HandleUpdate:
		c.onHandleUpdate(link, m)
	case ListRequest:
		c.onListRequest(link, m)
	case ListResponse:
		c.onListResponse(link, m)
	case InitTakeover:
		c.onInitTakeover(link, m)
	case InitTakeoverAck:
		c.onInitTakeoverAck(link, m)
	case TakeoverServer:
		c.onTakeoverServer(link, m)
	case Unrecognized:
		c.onUnrecognized(link, m)
	case ErrorMessage:
		c.onError(m)
	default:
		c.log.Debug("ignoring message", "type", msgName(m))
	}
}

// idString is the one format of identifiers, wire.FormatID.
func idString(id uint32) string { return wire.FormatID(id) }
