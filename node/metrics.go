package node

import (
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rspxdp/rspxdp/enrp"
	"github.com/rspxdp/rspxdp/internal/telemetry"
	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/wire"
)

// StatsSource reads the data plane's counters; *loader.Loader implements it.
type StatsSource interface {
	Stats() (loader.Stats, error)
}

// RegistrarView is what the metrics read of the registrar on each scrape;
// *enrp.Server implements it.
type RegistrarView interface {
	Handlespace() *selector.Handlespace
	Peers() []uint32
	Counters() enrp.Counters
	// StaticPeerStates says, per configured peer address, whether it is
	// reachable (enrp.Server.StaticPeerStates).
	StaticPeerStates() map[string]bool
}

// Metrics exposes a node to Prometheus. Counters of the data plane and the
// handlespace's sizes are read when scraped — from the per-CPU maps and the
// handlespace — not copied on a timer, so a scrape is never stale and an idle
// node does no work. Event counters (registrations, removals) are counted as
// the node applies handlespace changes.
type Metrics struct {
	reg *prometheus.Registry

	events     *prometheus.CounterVec
	syncs      prometheus.Counter
	syncErrors prometheus.Counter
	repairs    prometheus.Counter
	// mapRepairs counts kernel map entries rewritten by Loader.Repair.
	mapRepairs *prometheus.CounterVec
	// resolutions is the registrar's Handle Resolution latency, observed
	// through enrp.ServerConfig.ObserveResolution.
	resolutions prometheus.Histogram

	stats StatsSource
	rv    RegistrarView
	vipMu sync.Mutex // guards vips, replaced on a reload
	vips  map[loader.ServiceKey]VIP
	log   *slog.Logger

	descVIPPackets, descVIPBytes                     *prometheus.Desc
	descPEPackets, descPEBytes, descPENewFlows       *prometheus.Desc
	descDrops, descConn, descResteered, descFlood    *prometheus.Desc
	descICMP, descPools, descPEs, descPeers, descDPE *prometheus.Desc
	descPeerUp, descRejected                         *prometheus.Desc
	descStaticPeerUp                                 *prometheus.Desc
	descReg                                          map[string]*prometheus.Desc
	descGoroutines                                   *prometheus.Desc

	// peersSeen holds every ENRP peer ever alive, so rspxdp_enrp_peer_up
	// keeps a 0 series for a peer that died (and was taken over) instead
	// of the series vanishing, which an alert could not tell from "never
	// configured".
	peersMu   sync.Mutex
	peersSeen map[uint32]bool
}

// setVIPs replaces the VIPs whose pool labels the counters carry.
func (m *Metrics) setVIPs(vips []VIP) {
	next := make(map[loader.ServiceKey]VIP, len(vips))
	for _, v := range vips {
		next[v.key] = v
	}
	m.vipMu.Lock()
	m.vips = next
	m.vipMu.Unlock()
}

// NewMetrics builds the node's registry, which also holds the standard
// collectors (go_*, process_*, rspxdp_build_info; see package telemetry).
// stats and rv may be nil (the corresponding metrics are then absent): a
// registrar without a data plane passes nil stats and no VIPs.
func NewMetrics(stats StatsSource, rv RegistrarView, vips []VIP, log *slog.Logger) *Metrics {
	if log == nil {
		log = slog.Default()
	}
	m := &Metrics{
		reg:       telemetry.NewRegistry(),
		peersSeen: map[uint32]bool{},
		stats:     stats,
		rv:        rv,
		vips:      map[loader.ServiceKey]VIP{},
		log:       log,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rspxdp_pool_element_events_total",
			Help: "Handlespace changes applied to the data plane, by kind (added, removed, state_changed, weights_changed).",
		}, []string{"kind"}),
		syncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rspxdp_dataplane_syncs_total",
			Help: "Batches of handlespace changes programmed into the BPF maps.",
		}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rspxdp_dataplane_sync_errors_total",
			Help: "Failed attempts to program the BPF maps.",
		}),
		mapRepairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rspxdp_dataplane_map_repairs_total",
			Help: "Kernel map entries found deleted or changed behind the node's back and rewritten by reconciliation, by map.",
		}, []string{"map"}),
		repairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rspxdp_dataplane_drift_repairs_total",
			Help: "Differences between the maps and the handlespace found and repaired by reconciliation.",
		}),
		resolutions: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rspxdp_handle_resolution_duration_seconds",
			Help:    "Time from a Handle Resolution's arrival at the registrar to its answer being queued.",
			Buckets: prometheus.ExponentialBuckets(5e-6, 2, 16), // 5 us .. 164 ms
		}),
	}
	m.descReg = map[string]*prometheus.Desc{}
	for name, help := range registrarCounterHelp {
		m.descReg[name] = prometheus.NewDesc(name, help, nil, nil)
	}
	m.setVIPs(vips)
	vl := []string{"pool", "vip"}
	m.descVIPPackets = prometheus.NewDesc("rspxdp_vip_packets_total", "Packets forwarded for a virtual service.", vl, nil)
	m.descVIPBytes = prometheus.NewDesc("rspxdp_vip_bytes_total", "Bytes forwarded for a virtual service.", vl, nil)
	pl := []string{"pool", "vip", "pe"}
	m.descPEPackets = prometheus.NewDesc("rspxdp_pe_packets_total", "Packets the data plane sent to a pool element.", pl, nil)
	m.descPEBytes = prometheus.NewDesc("rspxdp_pe_bytes_total", "Bytes the data plane sent to a pool element.", pl, nil)
	m.descPENewFlows = prometheus.NewDesc("rspxdp_pe_new_flows_total", "New flows the data plane steered to a pool element.", pl, nil)
	m.descDrops = prometheus.NewDesc("rspxdp_dataplane_drops_total", "Packets of virtual services dropped, by reason.", []string{"reason"}, nil)
	m.descConn = prometheus.NewDesc("rspxdp_conntable_lookups_total", "Connection table lookups of service packets, by result.", []string{"result"}, nil)
	m.descResteered = prometheus.NewDesc("rspxdp_conntable_resteered_total", "Flows moved off a down or removed pool element.", nil, nil)
	m.descFlood = prometheus.NewDesc("rspxdp_flood_guard_skipped_total", "New flows forwarded without a connection entry by the flood guard.", nil, nil)
	m.descICMP = prometheus.NewDesc("rspxdp_icmp_forwarded_total", "ICMP too-big errors forwarded to the pool element of the flow they quote.", nil, nil)
	m.descPools = prometheus.NewDesc("rspxdp_pools", "Pools in the handlespace.", nil, nil)
	m.descPEs = prometheus.NewDesc("rspxdp_pool_elements", "Pool elements in the handlespace, by pool and state.", []string{"pool", "state"}, nil)
	m.descPeers = prometheus.NewDesc("rspxdp_enrp_peers", "ENRP peers currently alive.", nil, nil)
	m.descGoroutines = prometheus.NewDesc("rspxdp_registrar_goroutines", "Goroutines of the process (about two per open connection).", nil, nil)
	m.descStaticPeerUp = prometheus.NewDesc("rspxdp_enrp_static_peer_up",
		"1 while the configured ENRP peer (address, --peer) is connected, 0 while it does not answer.", []string{"address"}, nil)
	m.descPeerUp = prometheus.NewDesc("rspxdp_enrp_peer_up", "1 while the ENRP peer (server id) is alive, 0 once it died or left.", []string{"peer"}, nil)
	m.descRejected = prometheus.NewDesc("rspxdp_registrations_rejected_total", "Registrations refused, by the cause sent back.", []string{"cause"}, nil)
	m.descDPE = prometheus.NewDesc("rspxdp_dataplane_pool_elements", "Pool elements programmed in the data plane, by pool, virtual service and state.", []string{"pool", "vip", "state"}, nil)
	m.reg.MustRegister(m.events, m.syncs, m.syncErrors, m.repairs, m.mapRepairs, m.resolutions, collector{m})
	return m
}

// registrarCounterHelp names and explains the registrar's counters.
var registrarCounterHelp = map[string]string{
	"rspxdp_registrations_total":                  "Registrations of new pool elements accepted by this registrar.",
	"rspxdp_reregistrations_total":                "Re-registrations (refreshes) of known pool elements.",
	"rspxdp_deregistrations_total":                "Deregistrations accepted.",
	"rspxdp_keepalive_failures_total":             "Pool elements this registrar removed for a missed keep-alive.",
	"rspxdp_unreachable_removals_total":           "Pool elements removed after too many Endpoint Unreachable reports.",
	"rspxdp_handle_resolutions_total":             "Handle Resolutions answered.",
	"rspxdp_handle_resolutions_failed_total":      "Handle Resolutions answered with no pool element (unknown pool).",
	"rspxdp_enrp_takeovers_total":                 "Takeovers of dead registrars this registrar completed.",
	"rspxdp_enrp_takeover_adopted_elements_total": "Pool elements adopted by those takeovers.",
	"rspxdp_abort_removals_total":                 "Pool elements removed because their association was aborted or reset.",
	"rspxdp_enrp_audits_not_converged_total":      "Audits of a peer's pool elements after which the checksums still differed (some refused here); each backs off.",
	// The registrar under attack (enrp/conns.go).
	"rspxdp_registrar_accept_errors_total":          "Failed accepts (e.g. out of file descriptors), each followed by a back-off.",
	"rspxdp_registrar_connections_refused_total":    "Connections closed at once for a connection bound (per listener or per source).",
	"rspxdp_registrar_connections_evicted_total":    "Idle connections closed to make room for a newcomer on a full listener.",
	"rspxdp_registrar_idle_closed_total":            "Client connections carrying no PE and no peer closed after the idle timeout.",
	"rspxdp_registrar_queue_overflows_total":        "Connections closed because their send queue or the queue budget was full.",
	"rspxdp_registrar_first_message_timeouts_total": "Connections closed for sending no whole message in time after being accepted.",
	"rspxdp_registrar_foreign_keepalive_acks_total": "Keep-alive acks ignored for not arriving on the pool element's own association.",
	"rspxdp_registrar_wrong_protocol_total":         "Connections closed because their first message was another protocol's (a PU on the ENRP port, a dump on the ASAP port).",
	"rspxdp_registrar_replies_suppressed_total":     "Answers to broken messages not sent, over the per-source rate.",
	"rspxdp_enrp_peers_refused_total":               "ENRP messages whose sender was not admitted as a peer (no valid Presence, table full, another peer's connection).",
	"rspxdp_enrp_ownership_yielded_total":           "Pool elements this registrar owned and gave up to a newer claim by a peer.",
	"rspxdp_enrp_policy_conflicts_total":            "Replicated pool elements whose policy differed from their pool's here (settled by the older registration).",
	"rspxdp_enrp_stalls_total":                      "Times this registrar found it had been stalled (its clock jumped past its own timers).",
	"rspxdp_enrp_stale_registrations_total":         "Registrations that queued during a stall, ignored because the pool element had moved on.",
}

func registrarCounterValues(c enrp.Counters) map[string]uint64 {
	return map[string]uint64{
		"rspxdp_registrations_total":                  c.Registrations,
		"rspxdp_reregistrations_total":                c.Reregistrations,
		"rspxdp_deregistrations_total":                c.Deregistrations,
		"rspxdp_keepalive_failures_total":             c.KeepAliveFailures,
		"rspxdp_unreachable_removals_total":           c.UnreachableRemovals,
		"rspxdp_handle_resolutions_total":             c.Resolutions,
		"rspxdp_handle_resolutions_failed_total":      c.ResolutionsFailed,
		"rspxdp_enrp_takeovers_total":                 c.Takeovers,
		"rspxdp_enrp_takeover_adopted_elements_total": c.TakeoverAdoptedPEs,
		"rspxdp_abort_removals_total":                 c.AbortRemovals,
		"rspxdp_enrp_audits_not_converged_total":      c.AuditsNotConverged,

		"rspxdp_registrar_accept_errors_total":          c.AcceptErrors,
		"rspxdp_registrar_connections_refused_total":    c.ConnectionsRefused,
		"rspxdp_registrar_connections_evicted_total":    c.ConnectionsEvicted,
		"rspxdp_registrar_idle_closed_total":            c.IdleClosed,
		"rspxdp_registrar_queue_overflows_total":        c.QueueOverflows,
		"rspxdp_registrar_first_message_timeouts_total": c.FirstMessageTimeouts,
		"rspxdp_registrar_foreign_keepalive_acks_total": c.ForeignAcks,
		"rspxdp_registrar_wrong_protocol_total":         c.WrongProtocol,
		"rspxdp_registrar_replies_suppressed_total":     c.RepliesSuppressed,
		"rspxdp_enrp_peers_refused_total":               c.PeersRefused,
		"rspxdp_enrp_ownership_yielded_total":           c.OwnershipYielded,
		"rspxdp_enrp_policy_conflicts_total":            c.PolicyConflicts,
		"rspxdp_enrp_stalls_total":                      c.Stalls,
		"rspxdp_enrp_stale_registrations_total":         c.StaleRegistrations,
	}
}

// ObserveResolution records one Handle Resolution's latency.
func (m *Metrics) ObserveResolution(d time.Duration) { m.resolutions.Observe(d.Seconds()) }

// SetRegistrar sets the registrar the metrics read, for a caller that
// creates the registrar after the metrics (its config needs
// ObserveResolution). Call it before the registry is first gathered.
func (m *Metrics) SetRegistrar(rv RegistrarView) { m.rv = rv }

// Registry is the registry to serve (promhttp.HandlerFor) or to register
// more collectors with (the registrar's).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// observeChanges counts the events of an applied batch.
func (m *Metrics) observeChanges(changes []selector.PoolChange) {
	for _, c := range changes {
		for _, e := range c.Events {
			for _, k := range []struct {
				bit  selector.EventKind
				name string
			}{{selector.Added, "added"}, {selector.Removed, "removed"}, {selector.StateChanged, "state_changed"}, {selector.WeightsChanged, "weights_changed"}} {
				if e.Kind&k.bit != 0 {
					m.events.WithLabelValues(k.name).Inc()
				}
			}
		}
	}
}

type collector struct{ m *Metrics }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	m := c.m
	for _, d := range m.descReg {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{m.descVIPPackets, m.descVIPBytes, m.descPEPackets, m.descPEBytes, m.descPENewFlows,
		m.descDrops, m.descConn, m.descResteered, m.descFlood, m.descICMP, m.descPools, m.descPEs, m.descPeers, m.descDPE, m.descGoroutines,
		m.descPeerUp, m.descStaticPeerUp, m.descRejected} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	if m.rv != nil {
		hs := m.rv.Handlespace()
		pools := hs.Pools()
		gauge(m.descPools, len(pools))
		for _, p := range pools {
			set, _ := hs.SteeringSet(p)
			active, draining := 0, 0
			for _, mem := range set.Members {
				if mem.State == selector.Draining {
					draining++
				} else {
					active++
				}
			}
			gauge(m.descPEs, active, p, "active")
			gauge(m.descPEs, draining, p, "draining")
		}
		peers := m.rv.Peers()
		gauge(m.descPeers, len(peers))
		for id, up := range m.peerStates(peers) {
			v := 0
			if up {
				v = 1
			}
			gauge(m.descPeerUp, v, idLabel(id))
		}
		for addr, up := range m.rv.StaticPeerStates() {
			v := 0
			if up {
				v = 1
			}
			gauge(m.descStaticPeerUp, v, addr)
		}
		cs := m.rv.Counters()
		for name, v := range registrarCounterValues(cs) {
			counter(m.descReg[name], v)
		}
		gauge(m.descGoroutines, int(cs.Goroutines))
		for code, v := range cs.RejectedByCause {
			if code == 0 && v == 0 {
				continue // no cause 0 on the wire: only unknown codes land here
			}
			if code > int(enrp.CauseRejectionDueToSecurity) && v == 0 {
				continue
			}
			counter(m.descRejected, v, causeLabel(enrp.Cause(code)))
		}
	}
	if m.stats == nil {
		return
	}
	st, err := m.stats.Stats()
	if err != nil {
		m.log.Warn("metrics: read data-plane counters", "err", err)
		return
	}
	m.vipMu.Lock()
	vips := m.vips
	m.vipMu.Unlock()
	label := func(k loader.ServiceKey) (string, string) {
		v, ok := vips[k]
		if !ok {
			return "", fmtKey(k)
		}
		return v.Handle, fmtKey(k)
	}
	for k, s := range st.Services {
		pool, vip := label(k)
		counter(m.descVIPPackets, s.Packets, pool, vip)
		counter(m.descVIPBytes, s.Bytes, pool, vip)
	}
	for k, pes := range st.Backends {
		pool, vip := label(k)
		for id, b := range pes {
			pe := idLabel(id)
			counter(m.descPEPackets, b.Packets, pool, vip, pe)
			counter(m.descPEBytes, b.Bytes, pool, vip, pe)
			counter(m.descPENewFlows, b.NewFlows, pool, vip, pe)
		}
	}
	counter(m.descDrops, st.Drops.NoPE, "no_pe")
	counter(m.descDrops, st.Drops.BadHeader, "bad_header")
	counter(m.descDrops, st.Drops.TooBig, "too_big")
	counter(m.descDrops, st.Drops.Control, "control_port")
	counter(m.descDrops, st.Drops.Undeliverable, "undeliverable")
	counter(m.descConn, st.ConnHits, "hit")
	counter(m.descConn, st.ConnMisses, "miss")
	counter(m.descResteered, st.Resteered)
	counter(m.descFlood, st.FloodSkipped)
	counter(m.descICMP, st.ICMPForwarded)
	if dp, ok := m.stats.(Dataplane); ok {
		if svcs, err := dp.Services(); err == nil {
			for k, bs := range svcs {
				pool, vip := label(k)
				n := map[string]int{"active": 0, "draining": 0, "down": 0}
				for _, b := range bs {
					n[b.State.String()]++
				}
				for _, s := range []string{"active", "draining", "down"} {
					gauge(m.descDPE, n[s], pool, vip, s)
				}
			}
		}
	}
}

// peerStates merges the live peers into the peers ever seen: true for the
// live ones, false for the others.
func (m *Metrics) peerStates(alive []uint32) map[uint32]bool {
	m.peersMu.Lock()
	defer m.peersMu.Unlock()
	for id := range m.peersSeen {
		m.peersSeen[id] = false
	}
	for _, id := range alive {
		m.peersSeen[id] = true
	}
	out := make(map[uint32]bool, len(m.peersSeen))
	for id, up := range m.peersSeen {
		out[id] = up
	}
	return out
}

// idLabel is the one form of a PE or registrar identifier in metric labels.
func idLabel(id uint32) string { return wire.FormatID(id) }

// causeLabel turns a cause into a label value: "lack_of_resources",
// "rejection_due_to_security_considerations"; unknown codes keep their hex.
func causeLabel(c enrp.Cause) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '_'
	}, c.String())
}
