package enrp

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rspxdp/rspxdp/transport"
	"github.com/rspxdp/rspxdp/wire"
)

// Connection management under attack (issue 19 items 1, 3 and 4): what a
// connection costs before its peer has proved anything, who gets a slot when
// the listener is full, and what the accept loop does when the process runs
// out of descriptors.

// Defaults of the connection bounds.
const (
	// DefaultMaxConnectionsPerSource bounds the connections one source
	// address (an IPv6 /64) may hold on one listener.
	DefaultMaxConnectionsPerSource = 512
	// DefaultFirstMessageTimeout bounds the time from accepting a
	// connection to its first whole message (TLS handshake included).
	DefaultFirstMessageTimeout = 5 * time.Second
	// DefaultIdleTimeout closes a connection that serves nothing (no PE,
	// no peer) after this long without a message. A PU that comes back
	// later dials again; a PE's connection is never idle-closed, since
	// its keep-alives are what the registrar watches.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultQueueBudget bounds the bytes queued for sending over all
	// connections together.
	DefaultQueueBudget = 128 << 20
	// fdReserve is what the process keeps for everything but accepted
	// connections (dials to peers and PEs, announces, files, the node's
	// maps) when the listener bounds are sized under RLIMIT_NOFILE.
	fdReserve = 512
)

// queueLimits are a link's outgoing queue bounds, by role: an ASAP
// association needs room for answers, a proven ENRP peer for a handle table
// or a registration burst, and an ENRP connection whose sender has not
// introduced itself with a valid Presence next to nothing.
type queueLimits struct{ msgs, bytes int }

var (
	asapQueue     = queueLimits{4096, 4 << 20}
	unprovenQueue = queueLimits{256, 256 << 10}
	peerQueue     = queueLimits{1 << 16, 64 << 20}
)

// outQueue is a link's outgoing queue. It is a slice grown on demand, not a
// preallocated channel: an idle or unproven connection costs a few words,
// not the 1.5 MiB a 65,536-slot channel did.
type outQueue struct {
	mu     sync.Mutex
	msgs   [][]byte
	bytes  int
	closed bool
	wake   chan struct{} // one token: something was queued
	// writing: a goroutine is writing this queue out (the link's writer
	// or its reader, see writeQueued); it empties the queue before it
	// lets go, so a message queued meanwhile needs no wake-up.
	writing bool
	// inline: the link's reader is handling a message and writes what it
	// queues itself once done (readLoop), so queueing wakes nobody.
	inline bool
}

// queueBudget is the server-wide bound on queued bytes.
type queueBudget struct {
	max  int64
	used atomic.Int64
}

// take reserves n bytes, reporting false (and reserving nothing) past the
// budget.
func (b *queueBudget) take(n int) bool {
	if b.used.Add(int64(n)) > b.max {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

func (b *queueBudget) give(n int) { b.used.Add(-int64(n)) }

// limits returns l's queue bounds for its current role.
func (l *link) limits() queueLimits {
	switch {
	case l.proto == wire.ASAP:
		return asapQueue
	case l.peer.Load():
		return peerQueue
	}
	return unprovenQueue
}

// enqueue queues b for the link's writer. A peer that stops reading is cut
// off rather than waited for or silently shortchanged: closing tells it (a
// PE re-registers, a peer reconnects and the audit repairs). So is the link
// a message would take past the server's queue budget.
func (l *link) enqueue(b []byte) bool {
	q := &l.q
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	lim := l.limits()
	if len(q.msgs) >= lim.msgs || q.bytes+len(b) > lim.bytes || !l.budget.take(len(b)) {
		q.mu.Unlock()
		l.overflow.Store(true)
		l.close()
		return false
	}
	l.unsent.Add(1)
	q.msgs = append(q.msgs, b)
	q.bytes += len(b)
	wake := !q.inline && !q.writing
	q.mu.Unlock()
	if wake {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// writeQueued writes l's queued messages until the queue is empty, unless
// another goroutine is already doing so (then that one writes them). Both
// the link's writer goroutine and, for ASAP links, its reader call it: the
// reader writes the answer to the request it just handled itself, which
// saves a goroutine wake-up and hand-off per request (issue 15). batch is
// scratch space, returned for reuse.
func (l *link) writeQueued(ctx context.Context, bw transport.BatchWriter, batch [][]byte) ([][]byte, error) {
	q := &l.q
	q.mu.Lock()
	if q.writing {
		q.mu.Unlock()
		return batch, nil
	}
	q.writing = true
	for {
		batch = l.dequeueLocked(batch[:0])
		if len(batch) == 0 {
			q.writing = false
			q.mu.Unlock()
			return batch, nil
		}
		q.mu.Unlock()
		var err error
		if len(batch) > 1 && bw != nil {
			err = bw.WriteMessages(ctx, batch)
		} else {
			for _, b := range batch {
				if err = l.conn.WriteMessage(ctx, b); err != nil {
					break
				}
			}
		}
		l.sent(batch)
		clear(batch)
		q.mu.Lock()
		if err != nil {
			q.writing = false
			q.mu.Unlock()
			return batch, err
		}
	}
}

// beginInline marks that the link's reader will write what handling its
// current message queues (endInline).
func (l *link) beginInline() {
	l.q.mu.Lock()
	l.q.inline = true
	l.q.mu.Unlock()
}

// endInline writes, from the reader, what its message queued on l; a
// failed write closes the link (its reader then ends too).
func (l *link) endInline(ctx context.Context, bw transport.BatchWriter, batch [][]byte) [][]byte {
	l.q.mu.Lock()
	l.q.inline = false
	l.q.mu.Unlock()
	batch, err := l.writeQueued(ctx, bw, batch)
	if err != nil {
		l.close()
	}
	return batch
}

// dequeueLocked moves up to maxWriteBatch queued messages into batch;
// l.q.mu is held.
func (l *link) dequeueLocked(batch [][]byte) [][]byte {
	q := &l.q
	n := min(len(q.msgs), maxWriteBatch)
	batch = append(batch, q.msgs[:n]...)
	clear(q.msgs[:n])
	q.msgs = q.msgs[n:]
	if len(q.msgs) == 0 {
		q.msgs = nil // release the backing array a burst grew
	}
	return batch
}

// sent releases the budget of written (or dropped) messages.
func (l *link) sent(batch [][]byte) {
	n := 0
	for _, b := range batch {
		n += len(b)
	}
	l.q.mu.Lock()
	l.q.bytes -= n
	l.q.mu.Unlock()
	l.budget.give(n)
	l.unsent.Add(-int64(len(batch)))
}

// drainQueue drops what is still queued on a closed link.
func (l *link) drainQueue() {
	q := &l.q
	q.mu.Lock()
	q.closed = true
	n := q.bytes
	msgs := len(q.msgs)
	q.msgs, q.bytes = nil, 0
	q.mu.Unlock()
	l.budget.give(n)
	l.unsent.Add(-int64(msgs))
}

// sourceKey groups connections by source for the per-source bound: one
// IPv4 address, or one IPv6 /64 (what one host typically holds).
func sourceKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// connTable counts a listener's open accepted connections, in total and
// per source.
type connTable struct {
	mu       sync.Mutex
	total    int
	bySource map[netip.Prefix]int
}

func (t *connTable) add(src netip.Prefix) {
	t.mu.Lock()
	t.total++
	t.bySource[src]++
	t.mu.Unlock()
}

func (t *connTable) remove(src netip.Prefix) {
	t.mu.Lock()
	t.total--
	if t.bySource[src]--; t.bySource[src] <= 0 {
		delete(t.bySource, src)
	}
	t.mu.Unlock()
}

func (t *connTable) counts(src netip.Prefix) (total, fromSrc int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total, t.bySource[src]
}

// admitConn decides whether an accepted connection from src may stay. At
// the per-source bound it is refused; when the listener is full the idlest
// connection that serves nothing (no PE registered on it, no peer behind
// it) is closed to make room, so connections held open by an attacker
// cannot lock honest newcomers out.
func (s *Server) admitConn(c transport.Conn, p wire.Protocol, src netip.Prefix) bool {
	t := &s.conns[p]
	total, fromSrc := t.counts(src)
	if fromSrc >= s.maxPerSource {
		s.count(&s.stats.connsRefused)
		s.warnEvery("connection refused: too many from one source", "protocol", p.String(),
			"remote", c.RemoteAddr().String(), "max", s.maxPerSource)
		return false
	}
	if total < s.maxConns {
		return true
	}
	if fromSrc >= evictShare(s.maxConns) {
		// A source already holding its share of a full listener may not
		// push others out: its connections would only evict each other
		// (and newcomers) as fast as it redials.
		s.count(&s.stats.connsRefused)
		s.warnEvery("connection refused: listener full and this source holds its share", "protocol", p.String(),
			"remote", c.RemoteAddr().String(), "max", s.maxConns)
		return false
	}
	if v := s.idlest(p); v != nil {
		v.evicted.Store(true)
		v.close()
		s.count(&s.stats.connsEvicted)
		s.warnEvery("connection evicted to make room: listener full", "protocol", p.String(),
			"evicted", v.conn.RemoteAddr().String(), "for", c.RemoteAddr().String(), "max", s.maxConns)
		return true
	}
	s.count(&s.stats.connsRefused)
	s.warnEvery("connection refused: too many", "protocol", p.String(),
		"remote", c.RemoteAddr().String(), "max", s.maxConns)
	return false
}

// evictShare is how many connections of a full listener one source may
// hold and still evict another's to get one more.
func evictShare(maxConns int) int { return max(4, maxConns/100) }

// idlest returns the accepted connection of protocol p that nothing depends
// on and that is the best to close: one that never sent a message before
// one that did, then one from the source holding the most connections,
// then the one quiet longest. A PU whose request is being answered has
// spoken or comes from a source with few connections, so it is the last to
// go, even when the registrar is slow to read it.
func (s *Server) idlest(p wire.Protocol) *link {
	t := &s.conns[p]
	t.mu.Lock()
	held := maps.Clone(t.bySource)
	t.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	var victim *link
	var vKey evictKey
	for _, l := range s.links {
		if l.table == nil || l.proto != p || l.evicted.Load() || s.core.LinkInUse(l.id) {
			continue
		}
		k := evictKey{l.spoke.Load(), held[l.src], l.lastRead.Load()}
		if victim == nil || k.before(vKey) {
			victim, vKey = l, k
		}
	}
	return victim
}

// idleLoop closes, every quarter of IdleTimeout, the accepted connections
// that serve nothing and have been silent for IdleTimeout.
func (s *Server) idleLoop(ctx context.Context) {
	defer s.wg.Done()
	every := max(s.cfg.IdleTimeout/4, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.closeIdle(now)
		}
	}
}

// closeIdle closes the connections idle since before now-IdleTimeout that
// no PE and no peer depend on, and returns how many.
func (s *Server) closeIdle(now time.Time) int {
	if s.cfg.IdleTimeout <= 0 {
		return 0
	}
	cutoff := now.Add(-s.cfg.IdleTimeout).UnixNano()
	var idle []*link
	s.mu.Lock()
	for _, l := range s.links {
		if l.table == nil || l.peer.Load() || l.evicted.Load() || !l.spoke.Load() ||
			l.lastRead.Load() >= cutoff || s.core.LinkInUse(l.id) {
			continue
		}
		idle = append(idle, l)
	}
	s.mu.Unlock()
	for _, l := range idle {
		l.evicted.Store(true)
		s.stats.idleClosed.Add(1)
		l.close()
		// Routine for a PU that went away without closing: debug, and
		// counted (rspxdp_registrar_idle_closed_total).
		s.log.Debug("idle connection closed", "protocol", l.proto.String(),
			"remote", l.conn.RemoteAddr().String(), "idle_timeout", s.cfg.IdleTimeout)
	}
	return len(idle)
}

// evictKey orders eviction candidates.
type evictKey struct {
	spoke    bool
	held     int // connections of its source
	lastRead int64
}

func (a evictKey) before(b evictKey) bool {
	switch {
	case a.spoke != b.spoke:
		return !a.spoke
	case a.held != b.held:
		return a.held > b.held
	}
	return a.lastRead < b.lastRead
}

// acceptLoop accepts connections on ln until ctx ends. A failure other than
// the listener closing (typically EMFILE: out of descriptors) is retried
// after a back-off that doubles up to a second, counted, and logged at most
// once per logInterval with the number of failures since the last line.
func (s *Server) acceptLoop(ctx context.Context, ln transport.Listener, p wire.Protocol) {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.count(&s.stats.acceptErrors)
			s.warnEvery("accept failed; backing off", "protocol", p.String(), "err", err,
				"descriptorsExhausted", errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE))
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		src := netip.Prefix{}
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			src = sourceKey(ap.Addr())
		}
		if !s.admitConn(c, p, src) {
			_ = c.Close()
			continue
		}
		s.conns[p].add(src)
		s.addLink(c, p, false, &s.conns[p], src)
	}
}

// rateLogs limit log lines by message: at most one record per
// logInterval for each, the record saying how many were suppressed since
// the last one, so a flood of one kind cannot fill the disk nor hide
// another kind.
type rateLogs struct {
	mu    sync.Mutex
	lines map[string]*rateLog
}

type rateLog struct {
	last       time.Time
	suppressed int
}

// logInterval is the minimum time between two records of one message.
const logInterval = 10 * time.Second

// warnEvery logs msg at most once per logInterval.
func (s *Server) warnEvery(msg string, args ...any) {
	rl := &s.logs
	rl.mu.Lock()
	if rl.lines == nil {
		rl.lines = map[string]*rateLog{}
	}
	l := rl.lines[msg]
	if l == nil {
		if len(rl.lines) > 64 { // messages are constants but for a few reasons
			clear(rl.lines)
		}
		l = &rateLog{}
		rl.lines[msg] = l
	}
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < logInterval {
		l.suppressed++
		rl.mu.Unlock()
		return
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	rl.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	s.log.Warn(msg, args...)
}

// serverStats are the Server's own counters (the Core counts protocol
// events); Counters merges them.
type serverStats struct {
	acceptErrors, connsRefused, connsEvicted atomic.Uint64
	idleClosed                               atomic.Uint64
	queueOverflows, firstMessageTimeouts     atomic.Uint64
	notThisProtocol, repliesSuppressed       atomic.Uint64
}

func (s *Server) count(c *atomic.Uint64) { c.Add(1) }

// fdLimit returns the soft RLIMIT_NOFILE (Go raises it to the hard limit
// at start), or 0 when unknown.
func fdLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<30 {
		return 0
	}
	return int(r.Cur)
}

// sizeConnections fits the per-listener connection bound under the
// process's descriptor limit: two listeners at the bound plus a reserve must
// not run the process out of descriptors, where accept fails for everyone.
func sizeConnections(want, limit int) int {
	if limit <= 0 {
		return want
	}
	fit := (limit - fdReserve) / 2
	if fit < 16 {
		fit = 16
	}
	return min(want, fit)
}

// readFirst reads an accepted connection's first message within
// FirstMessageTimeout: a connection that never completes its TLS handshake
// or never sends a whole message is closed, and its slot freed.
func (s *Server) readFirst(l *link) ([]byte, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.FirstMessageTimeout)
	defer cancel()
	b, err := l.conn.ReadMessage(ctx)
	if err != nil && errors.Is(err, context.DeadlineExceeded) && s.ctx.Err() == nil {
		s.count(&s.stats.firstMessageTimeouts)
		s.warnEvery("connection closed: nothing received in time", "protocol", l.proto.String(),
			"remote", l.conn.RemoteAddr().String(), "timeout", s.cfg.FirstMessageTimeout)
		l.close()
	}
	return b, err
}

// notThisProtocol says why an accepted connection's first message shows it
// speaks another protocol than the listener's, or "". A PU pointed at the
// ENRP port sends a Handle Resolution, which decodes as an ENRP message
// from a garbage sender; `rspxdp status` pointed at the ASAP port sends
// ENRP, which does not decode as ASAP. Closing at once (and logging why)
// makes such a client fail fast instead of waiting for an answer that
// never comes (issue 14 item 7). Over SCTP the payload protocol identifier
// already tells, and rsplib's first message on a new association may be
// any ENRP message, so there only undecodable ones count.
func (s *Server) notThisProtocol(l *link, m Message, ok bool) string {
	if !ok {
		if l.proto == wire.ENRP {
			return "not ENRP (an ASAP client on the ENRP port?)"
		}
		return "not ASAP (an ENRP peer or `rspxdp status` on the ASAP port?)"
	}
	if _, unknown := m.(Unrecognized); unknown || l.proto != wire.ENRP || s.enrpT.Name() == "sctp" {
		return "" // an unknown message type is answered with an Error instead
	}
	switch m := m.(type) {
	case Presence:
		if m.Info.ID == m.Sender && m.Info.ENRP.IsValid() {
			return ""
		}
		return "Presence without a Server Information naming its sender"
	case HandleTableRequest:
		return "" // an observer (`rspxdp status`) or a peer
	}
	return "first message is no Presence (an ASAP client on the ENRP port?)"
}

// Rate of answers (Errors, rejections) to broken messages per source.
const (
	replyRate  = 20
	replyBurst = 40
)

// replyAllowed reports whether l's source may get another answer to a
// broken message now, counting those suppressed.
func (s *Server) replyAllowed(l *link) bool {
	key := l.src.String()
	if !l.src.IsValid() {
		key = l.conn.RemoteAddr().String()
	}
	if s.replies.Allow(key, time.Now()) {
		return true
	}
	s.count(&s.stats.repliesSuppressed)
	return false
}
