// Package node joins rspxdp's two halves on one Linux host: it runs a
// registrar (ENRP + ASAP, package enrp) and the XDP data plane (package
// loader), and keeps the BPF maps equal to the handlespace.
//
// Every handlespace change — a PE of this registrar or one replicated by an
// ENRP peer — reaches the maps through a subscription; a periodic
// reconciliation compares the maps with the handlespace and repairs (and
// reports) any drift. The data plane's counters are exported to Prometheus,
// read from the per-CPU maps when scraped.
//
// Several nodes with the same VIPs and hash seed program identical Maglev
// tables, so an ECMP router may send a flow to any of them and the same PE
// answers.
package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rspxdp/rspxdp/enrp"
	"github.com/rspxdp/rspxdp/internal/telemetry"
	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/security"
	"github.com/rspxdp/rspxdp/selector"
)

// Node is a running registrar with its data plane.
type Node struct {
	cfgMu sync.Mutex // guards cfg, replaced by Reload
	cfg   Config
	log   *slog.Logger
	level *slog.LevelVar // nil: the log level is not adjustable
	// feedback turns new-flow counters into least-used degradation.
	feedback *flowFeedback
	reg      *enrp.Server
	lb       *loader.Loader
	sync     *Syncer
	metrics  *Metrics
	ready    *Readiness
	mln      net.Listener
	sub      *selector.Subscription
	secure   *enrp.Security // nil without TLS
	bgp      *nodeBGP       // nil without BGP
	// apply serialises programming the maps between the registrar's
	// BeforeSend hook and the Run loop.
	apply sync.Mutex
}

// New validates cfg, loads and attaches the data plane and binds the
// registrar's listeners. On any error nothing is left attached (unless the
// pinned state belonged to a previous run and KeepOnExit is set, which
// leaves that run's state as it found it).
func New(ctx context.Context, cfg Config, log *slog.Logger, opts ...Option) (*Node, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lopts, err := loaderOptions(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := checkControlSide(cfg); err != nil {
		return nil, err
	}
	scfg, err := registrarConfig(cfg.Registrar, log)
	if err != nil {
		return nil, err
	}
	// The metrics listener first: it is the cheapest thing to fail on.
	var mln net.Listener
	if cfg.Metrics != "" {
		if mln, err = net.Listen("tcp", cfg.Metrics); err != nil {
			return nil, fmt.Errorf("metrics: listen %s: %w", cfg.Metrics, err)
		}
	}
	lb, err := loader.Open(lopts)
	if err != nil {
		if mln != nil {
			mln.Close()
		}
		return nil, fmt.Errorf("data plane: %w", err)
	}
	var reg *enrp.Server
	// A failed start leaves nothing attached, pinned or listening: only a
	// previous run's adopted state stays (with keep-on-exit), as found.
	fail := func(err error) (*Node, error) {
		if reg != nil {
			if cerr := reg.Close(); cerr != nil {
				log.Warn("registrar: close after failed start", "err", cerr)
			}
		}
		if mln != nil {
			mln.Close()
		}
		if cerr := lb.Close(cfg.Dataplane.KeepOnExit && lb.Adopted()); cerr != nil {
			log.Warn("data plane: close after failed start", "err", cerr)
		}
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, lb: lb, secure: scfg.Security, mln: mln}
	for _, o := range opts {
		o(n)
	}
	n.metrics = NewMetrics(lb, nil, cfg.VIPs, log)
	scfg.BeforeSend = n.beforeSend
	scfg.ObserveResolution = n.metrics.ObserveResolution
	reg, err = enrp.NewServer(ctx, scfg)
	if err != nil {
		return fail(fmt.Errorf("registrar: %w", err))
	}
	n.reg = reg
	n.sync = NewSyncer(reg.Handlespace(), lb, cfg.VIPs, cfg.Dataplane.Forwarding == "l2dsr", log)
	n.metrics.rv = reg
	n.ready = NewReadiness(reg, len(cfg.Registrar.Peers),
		PeerWait(cfg.Registrar.Timers.PeerMaxTimeLastHeard.D(), cfg.Registrar.Timers.PeerMaxTimeNoResponse.D()))
	// Loaded but not yet programmed: Run's first sync makes it ready.
	n.ready.SetDataplane(false, nil)
	n.sub = reg.Handlespace().Subscribe()
	if err := n.newBGP(); err != nil {
		return fail(err)
	}
	// New-flow counters feed least-used-with-degradation pools once a
	// second (Run): often enough to spread a burst, rare enough that the
	// Maglev ring of a busy pool is not rebuilt on every flow.
	n.feedback = newFlowFeedback(reg.Handlespace(), cfg.VIPs)
	return n, nil
}

func loaderOptions(cfg Config, log *slog.Logger) (loader.Options, error) {
	d := cfg.Dataplane
	mode, err := d.mode()
	if err != nil {
		return loader.Options{}, err
	}
	o := loader.Options{
		PinDir:        d.PinDir,
		Interfaces:    d.Interfaces,
		Mode:          mode,
		TableSize:     d.TableSize,
		Seed:          d.Seed,
		ConnTableSize: d.ConnTableSize,
		FloodLimit:    d.FloodLimit,
		Redirect:      d.Redirect,
		Logger:        log,
	}
	if d.FloodLimit == 0 {
		o.FloodLimit = loader.NoFloodLimit
	}
	if d.SourceV4 != "" {
		o.SourceV4 = netip.MustParseAddr(d.SourceV4)
	}
	if d.SourceV6 != "" {
		o.SourceV6 = netip.MustParseAddr(d.SourceV6)
	}
	o.ControlPorts = controlPorts(cfg)
	o.ControlNetworks, err = parsePrefixes(d.ControlNetworks)
	return o, err
}

// controlPorts are the ports the data plane closes to the client side: the
// registrar's ASAP and ENRP listen ports and the metrics port.
func controlPorts(cfg Config) []uint16 {
	var ports []uint16
	for _, a := range []string{cfg.Registrar.ASAP, cfg.Registrar.ENRP, cfg.Metrics} {
		if a == "" {
			continue
		}
		if _, p, err := splitHostPort(a); err == nil && p != 0 && !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports
}

// checkControlSide refuses a registrar listen address that belongs to a
// client-facing interface, unless registrar.listen-on-client-side says so:
// the registrar is for PEs, PUs and peers on the control side. (A wildcard
// address is accepted: the data plane's control-port filter closes it to
// the client side.) Interfaces that do not exist are left to the loader,
// which names them.
func checkControlSide(cfg Config) error {
	if cfg.Registrar.ListenOnClientSide {
		return nil
	}
	client := map[netip.Addr]string{}
	for _, name := range cfg.Dataplane.Interfaces {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return fmt.Errorf("dataplane.interfaces: addresses of %s: %w", name, err)
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				client[p.Addr().Unmap()] = name
			}
		}
	}
	for _, f := range []struct{ name, addr string }{{"registrar.asap", cfg.Registrar.ASAP}, {"registrar.enrp", cfg.Registrar.ENRP}} {
		host, _, err := splitHostPort(f.addr)
		if err != nil {
			continue
		}
		a, err := netip.ParseAddr(strings.Trim(host, "[]"))
		if err != nil {
			continue
		}
		if ifc, ok := client[a.Unmap()]; ok {
			return fmt.Errorf("%s: %s is an address of the client-facing interface %s: listen on a control-side address "+
				"(or set registrar.listen-on-client-side / --listen-on-client-side, and allow the control sources with --control-net)", f.name, f.addr, ifc)
		}
	}
	return nil
}

func registrarConfig(r RegistrarConfig, log *slog.Logger) (enrp.ServerConfig, error) {
	c := enrp.ServerConfig{
		Transport:  r.Transport,
		ASAPListen: r.ASAP,
		ENRPListen: r.ENRP,
		Peers:      r.Peers,
		Announce:   r.Announce,
	}
	if r.Announce {
		c.AnnounceMulticast = true
	}
	c.ID = r.ID
	if r.AdvertiseASAP != "" {
		c.ASAP = netip.MustParseAddrPort(r.AdvertiseASAP)
	}
	if r.AdvertiseENRP != "" {
		c.ENRP = netip.MustParseAddrPort(r.AdvertiseENRP)
	}
	t := r.Timers
	c.KeepAliveInterval = t.KeepAliveInterval.D()
	c.KeepAliveTimeout = t.KeepAliveTimeout.D()
	c.PeerHeartbeatCycle = t.PeerHeartbeatCycle.D()
	c.PeerMaxTimeLastHeard = t.PeerMaxTimeLastHeard.D()
	c.PeerMaxTimeNoResponse = t.PeerMaxTimeNoResponse.D()
	c.TakeoverExpiry = t.TakeoverExpiry.D()
	c.DrainTimeout = t.DrainTimeout.D()
	if c.DrainTimeout == 0 {
		c.DrainTimeout = -1 // 0s in the file: no drain (enrp's 0 is its default)
	}
	c.LeaveTimeout = t.LeaveTimeout.D()
	c.IdleTimeout = t.IdleTimeout.D()
	if c.IdleTimeout == 0 {
		c.IdleTimeout = -1 // 0s: never (enrp's 0 is its default)
	}
	if c.LeaveTimeout == 0 {
		c.LeaveTimeout = -1 // 0s: leave without telling the peers
	}
	c.AnnounceInterval = t.AnnounceInterval.D()
	c.DialTimeout = t.DialTimeout.D()
	c.MaxPEs, c.MaxResolutionItems, c.MaxIncrement = r.MaxPEs, r.MaxResolutionItems, r.MaxIncrement
	c.MaxPEsPerResponse, c.MaxBadPEReports = r.MaxPEsPerResponse, r.MaxBadPEReports
	c.PeerAnnounce, c.PeerAnnounceMulticast = r.PeerAnnounce, r.PeerAnnounce
	for _, a := range r.AnnounceTo {
		c.AnnounceUnicast = append(c.AnnounceUnicast, netip.MustParseAddrPort(a))
	}
	c.Announce = r.Announce || len(c.AnnounceUnicast) > 0
	c.Logger = log
	if len(r.AllowHandles) > 0 || len(r.AllowNetworks) > 0 {
		a := &enrp.AllowList{Handles: r.AllowHandles}
		for _, s := range r.AllowNetworks {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return c, fmt.Errorf("registrar.allow-networks: %q: %w", s, err)
			}
			a.Networks = append(a.Networks, p)
		}
		c.Allow = a
	}
	c.MaxPools, c.MaxPEsPerPool, c.MaxConnections = r.MaxPools, r.MaxPEsPerPool, r.MaxConnections
	c.MaxConnectionsPerSource = r.MaxConnectionsPerSource
	if t := r.TLS; t.Enabled() {
		rl, err := security.NewReloader(security.Files{CA: t.CA, Cert: t.Cert, Key: t.Key})
		if err != nil {
			return c, fmt.Errorf("registrar.tls: %w", err)
		}
		pf, err := security.OpenPolicyFile(t.Policy)
		if err != nil {
			return c, fmt.Errorf("registrar.tls.policy: %w", err)
		}
		c.Security = &enrp.Security{TLS: rl, Policy: pf,
			Resolutions:  security.RateConfig{Rate: t.MaxResolutionRate},
			Unreachables: security.RateConfig{Rate: t.MaxUnreachableRate},
			Reports:      security.ReportConfig{Reporters: r.MaxBadPEReports},
		}
	}
	return c, nil
}

// Registrar returns the embedded registrar.
func (n *Node) Registrar() *enrp.Server { return n.reg }

// Loader returns the data plane.
func (n *Node) Loader() *loader.Loader { return n.lb }

// Readiness returns what /readyz reports.
func (n *Node) Readiness() *Readiness { return n.ready }

// Metrics returns the node's metrics.
func (n *Node) Metrics() *Metrics { return n.metrics }

// MetricsAddr returns the bound metrics address, or nil.
func (n *Node) MetricsAddr() net.Addr {
	if n.mln == nil {
		return nil
	}
	return n.mln.Addr()
}

// Run serves until ctx ends: the registrar, the sync of its handlespace into
// the maps, the periodic reconciliation and the metrics endpoint. On return
// the data plane is detached and unpinned, unless KeepOnExit.
func (n *Node) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sub := n.sub
	defer sub.Close()

	// The grace covers PEs of a previous run: they re-register within a
	// keep-alive round or are sent by a mentor peer well before it ends.
	cfg := n.config()
	grace := 3 * max(cfg.Registrar.Timers.KeepAliveInterval.D(), enrp.DefaultKeepAliveInterval)
	adopted, err := n.sync.Start(grace)
	if err != nil {
		n.close()
		return fmt.Errorf("program data plane: %w", err)
	}
	n.ready.SetDataplane(true, nil)
	if adopted > 0 {
		n.log.Info("adopted pinned data-plane state", "pool_elements", adopted, "grace", grace)
	}

	errc := make(chan error, 3)
	// The registrar outlives ctx by the BGP drain: a stopping node
	// withdraws its VIPs first and leaves ENRP only after the routers
	// have moved its flows.
	regCtx, regCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer regCancel()
	regDone := make(chan error, 1)
	go func() { regDone <- n.reg.Run(regCtx) }()
	if err := n.startBGP(ctx); err != nil {
		regCancel()
		<-regDone
		n.close()
		return err
	}
	n.ready.SetServing(true)
	defer n.ready.SetServing(false)
	var srv *telemetry.Server
	mctx, mcancel := context.WithCancel(context.Background())
	defer mcancel()
	mdone := make(chan struct{})
	if n.mln != nil {
		mux := telemetry.Mux(n.metrics.Registry(), n.ready.Checks())
		mux.HandleFunc("/status", n.serveStatus)
		srv = telemetry.NewServer(n.mln, mux)
		go func() {
			defer close(mdone)
			if err := srv.Serve(mctx, n.log); err != nil {
				errc <- err
			}
		}()
	} else {
		close(mdone)
	}
	n.log.Info("node running", "registrar_id", n.reg.ID(), "asap", n.reg.ASAPAddr(), "enrp", n.reg.ENRPAddr(),
		"interfaces", cfg.Dataplane.Interfaces, "vips", len(cfg.VIPs), "metrics", n.MetricsAddr())
	n.log.Info("control ports closed to the client-facing interfaces", "ports", controlPorts(cfg),
		"interfaces", cfg.Dataplane.Interfaces, "allowed_sources", cfg.Dataplane.ControlNetworks)

	tick := time.NewTicker(cfg.ReconcileEvery.D())
	defer tick.Stop()
	fbTick := time.NewTicker(time.Second)
	defer fbTick.Stop()
	var runErr error
	stopping, drained := ctx.Done(), (<-chan time.Time)(nil)
loop:
	for {
		select {
		case <-stopping:
			n.ready.SetServing(false) // leaving: /readyz fails first
			stopping, drained = nil, n.beginStop()
		case <-drained:
			break loop
		case err := <-regDone:
			regDone = nil
			n.registrarStopped()
			if err != nil || drained == nil {
				runErr = err
				break loop
			}
		case err := <-errc:
			runErr = err
			break loop
		case <-sub.Ready():
			n.applyPending()
		case <-fbTick.C:
			if st, err := n.lb.Stats(); err == nil {
				if k := n.feedback.step(st); k > 0 {
					n.log.Debug("new flows degraded least-used PEs", "pes", k)
				}
			}
		case <-tick.C:
			n.apply.Lock()
			repairs, err := n.sync.Reconcile()
			n.apply.Unlock()
			for _, r := range repairs {
				if r.Map != "" {
					n.log.Warn("reconcile: repaired a kernel map changed behind the node's back", "map", r.Map, "what", r.What)
					n.metrics.mapRepairs.WithLabelValues(r.Map).Inc()
				} else {
					n.log.Warn("reconcile: repaired drift", "service", r.Service, "what", r.What)
				}
			}
			n.metrics.repairs.Add(float64(len(repairs)))
			n.ready.SetDataplane(true, err)
			if err != nil {
				n.metrics.syncErrors.Inc()
				n.log.Error("reconcile failed", "err", err)
			}
		}
	}
	n.stopBGP()
	regCancel()
	if regDone != nil {
		if err := <-regDone; err != nil && runErr == nil {
			runErr = err
		}
	}
	cancel()
	n.ready.SetServing(false)
	mcancel()
	<-mdone
	n.close()
	return runErr
}

// beforeSend is the registrar's BeforeSend hook: it programs pending
// handlespace changes into the maps before the registrar sends the messages
// that announce them, so no peer, PE or PU learns of a change the data plane
// does not yet enforce (a PE removed for failed keep-alives is out of the
// maps before the Handle Update leaves).
func (n *Node) beforeSend() {
	if n.sub == nil || n.sync == nil {
		return // still starting: Run's first sync programs everything
	}
	n.applyPending()
}

// applyPending programs the changes pending on the subscription.
func (n *Node) applyPending() {
	n.apply.Lock()
	defer n.apply.Unlock()
	changes := n.sub.Drain()
	if len(changes) == 0 {
		return
	}
	n.metrics.observeChanges(changes)
	n.metrics.syncs.Inc()
	err := n.sync.Apply(changes)
	n.ready.SetDataplane(true, err)
	if err != nil {
		n.metrics.syncErrors.Inc()
		n.log.Error("data plane sync failed; reconciliation will retry", "err", err)
	}
	n.checkBGP()
}

func (n *Node) close() {
	cfg := n.config() // a reload may run while the node stops
	keep := cfg.Dataplane.KeepOnExit
	if err := n.lb.Close(keep); err != nil {
		n.log.Warn("data plane: close", "err", err)
	}
	if keep {
		n.log.Info("left the data plane attached and pinned for the next run", "pin_dir", cfg.Dataplane.PinDir)
	} else {
		n.log.Info("detached the data plane and removed its pins")
	}
}
