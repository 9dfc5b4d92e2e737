package bgp

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Routes is what the Announcer needs of a speaker: *Speaker implements it;
// tests use a recording fake.
type Routes interface {
	Announce(p netip.Prefix) error
	Withdraw(p netip.Prefix) error
}

// Announcer carries the Decider's changes to a speaker and reports them:
// a log line per change, and the metrics
//
//	rspxdp_bgp_vip_announced{vip}           1 while the prefix is announced
//	rspxdp_bgp_announced_vips               how many are
//	rspxdp_bgp_withdrawals_total{reason}    withdrawals, by reason
//	rspxdp_bgp_announcements_total          announcements
//	rspxdp_bgp_session_state{peer,state}    1 for each session's current state
//
// It is safe for concurrent use.
type Announcer struct {
	log    *slog.Logger
	routes Routes

	mu          sync.Mutex
	dec         *Decider
	withdrawals map[Reason]uint64

	announced     *prometheus.GaugeVec
	announcedN    prometheus.Gauge
	withdrawn     *prometheus.CounterVec
	announcements prometheus.Counter
	failures      prometheus.Counter
	session       *prometheus.GaugeVec
}

// NewAnnouncer returns an announcer for prefixes over routes (see
// NewDecider for minPEs and settle), its metrics registered with reg (nil:
// not registered).
func NewAnnouncer(routes Routes, prefixes []netip.Prefix, minPEs int, settle time.Duration, reg prometheus.Registerer, log *slog.Logger) *Announcer {
	if log == nil {
		log = slog.Default()
	}
	a := &Announcer{
		log: log, routes: routes, dec: NewDecider(prefixes, minPEs, settle), withdrawals: map[Reason]uint64{},
		announced: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rspxdp_bgp_vip_announced",
			Help: "1 while the VIP prefix is announced to the BGP peers, 0 while it is withdrawn."}, []string{"vip"}),
		announcedN: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rspxdp_bgp_announced_vips",
			Help: "VIP prefixes announced to the BGP peers."}),
		withdrawn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rspxdp_bgp_withdrawals_total",
			Help: "VIP prefix withdrawals, by reason (too-few-pes, dataplane-detached, registrar-down, shutdown)."}, []string{"reason"}),
		announcements: prometheus.NewCounter(prometheus.CounterOpts{Name: "rspxdp_bgp_announcements_total",
			Help: "VIP prefix announcements."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "rspxdp_bgp_route_errors_total",
			Help: "Announcements or withdrawals the BGP speaker refused."}),
		session: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rspxdp_bgp_session_state",
			Help: "1 for the current state of each BGP session (idle, connect, active, opensent, openconfirm, established)."}, []string{"peer", "state"}),
	}
	for _, p := range a.dec.Prefixes() {
		a.announced.WithLabelValues(p.String()).Set(0)
	}
	for _, r := range []Reason{ReasonTooFewPEs, ReasonDataplaneDetached, ReasonRegistrarDown, ReasonShutdown, ReasonRemoved} {
		a.withdrawn.WithLabelValues(string(r))
	}
	if reg != nil {
		reg.MustRegister(a.announced, a.announcedN, a.withdrawn, a.announcements, a.failures, a.session)
	}
	return a
}

// Update evaluates h and announces or withdraws what changed.
func (a *Announcer) Update(h Health) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.dec.Step(h) {
		a.apply(c, h)
	}
}

func (a *Announcer) apply(c Change, h Health) {
	var err error
	if c.Announce {
		err = a.routes.Announce(c.Prefix)
	} else {
		err = a.routes.Withdraw(c.Prefix)
	}
	if err != nil {
		a.failures.Inc()
		a.dec.undo(c)
		a.log.Error("bgp: route change failed; retrying on the next health check", "vip", c.Prefix, "announce", c.Announce, "reason", c.Reason, "err", err)
		return
	}
	if c.Announce {
		a.announcements.Inc()
		a.announced.WithLabelValues(c.Prefix.String()).Set(1)
		a.announcedN.Inc()
		a.log.Info("bgp: announced VIP", "vip", c.Prefix, "active_pes", h.ActivePEs[c.Prefix])
		return
	}
	a.withdrawals[c.Reason]++
	a.withdrawn.WithLabelValues(string(c.Reason)).Inc()
	a.announced.WithLabelValues(c.Prefix.String()).Set(0)
	a.announcedN.Dec()
	a.log.Warn("bgp: withdrew VIP", "vip", c.Prefix, "reason", c.Reason, "active_pes", h.ActivePEs[c.Prefix])
}

// SetPrefixes replaces the managed prefixes (a reload changed the VIPs),
// withdrawing those that are gone.
func (a *Announcer) SetPrefixes(prefixes []netip.Prefix) {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := Health{Now: time.Now()}
	for _, c := range a.dec.SetPrefixes(prefixes) {
		a.apply(c, h)
		a.announced.DeleteLabelValues(c.Prefix.String())
	}
	for _, p := range a.dec.Prefixes() {
		if !a.dec.Announced(p) {
			a.announced.WithLabelValues(p.String()).Set(0)
		}
	}
}

// WithdrawAll withdraws every announced prefix for the reason shutdown
// and returns how many it withdrew; later Updates announce nothing.
func (a *Announcer) WithdrawAll() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	h := Health{ShuttingDown: true, Now: time.Now()}
	for _, c := range a.dec.Step(h) {
		a.apply(c, h)
		n++
	}
	a.dec.stopped = true
	return n
}

// SessionChanged records a session's new state in the metrics.
func (a *Announcer) SessionChanged(p PeerStatus) {
	for _, s := range SessionStates {
		v := 0.0
		if s == p.State {
			v = 1
		}
		a.session.WithLabelValues(p.Address, s).Set(v)
	}
}

// VIPStatus is one prefix's announcement state.
type VIPStatus struct {
	Prefix    string `json:"prefix"`
	Announced bool   `json:"announced"`
	Reason    Reason `json:"reason"`
}

// Status is the BGP half of a node's /status.
type Status struct {
	ASN         uint32            `json:"asn"`
	RouterID    string            `json:"router_id"`
	Peers       []PeerStatus      `json:"peers"`
	VIPs        []VIPStatus       `json:"vips"`
	Withdrawals map[Reason]uint64 `json:"withdrawals"`
}

// Status returns the prefixes' states and the withdrawal counts.
func (a *Announcer) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Status{VIPs: []VIPStatus{}, Peers: []PeerStatus{}, Withdrawals: map[Reason]uint64{}}
	for _, p := range a.dec.Prefixes() {
		st.VIPs = append(st.VIPs, VIPStatus{Prefix: p.String(), Announced: a.dec.Announced(p), Reason: a.dec.Reason(p)})
	}
	for r, n := range a.withdrawals {
		st.Withdrawals[r] = n
	}
	return st
}
