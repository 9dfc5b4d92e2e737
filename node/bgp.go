package node

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rspxdp/rspxdp/bgp"
	"github.com/rspxdp/rspxdp/loader"
)

// bgpCheckEvery is how often the node re-checks what no handlespace change
// reports (the XDP program still attached); PE changes are checked as
// they are programmed.
const bgpCheckEvery = 250 * time.Millisecond

// nodeBGP is the node's BGP half: the speaker, the announcer deciding from
// the node's health, and which prefix each virtual service lives on.
type nodeBGP struct {
	cfg      bgp.Config
	keep     bool // dataplane.keep-on-exit
	sp       *bgp.Speaker
	an       *bgp.Announcer
	mu       sync.Mutex // guards prefixes, which a reload replaces
	prefixes map[loader.ServiceKey]netip.Prefix
	// kick asks the checker goroutine for a health check; sends never
	// block, so the registrar's hook never waits on the BGP speaker.
	kick    chan struct{}
	started bool
	stop    context.CancelFunc
	done    chan struct{}
	// regUp is cleared when the registrar's Run returns.
	regUp atomic.Bool
}

// newBGP builds the BGP half of a node from a validated configuration, or
// nil when BGP is not configured. Nothing is sent before startBGP.
func (n *Node) newBGP() error {
	c := n.cfg.BGP
	if !c.Enabled() {
		return nil
	}
	sp, err := bgp.NewSpeaker(c, n.log)
	if err != nil {
		return err
	}
	b := &nodeBGP{cfg: c.WithDefaults(), keep: n.cfg.Dataplane.KeepOnExit, sp: sp, prefixes: map[loader.ServiceKey]netip.Prefix{},
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	b.regUp.Store(true)
	ps := b.setPrefixes(n.cfg.VIPs)
	b.an = bgp.NewAnnouncer(sp, ps, b.cfg.MinPEs, b.cfg.Settle, n.metrics.Registry(), n.log)
	for _, p := range sp.Peers() {
		b.an.SessionChanged(p)
	}
	sp.OnState(b.an.SessionChanged)
	n.bgp = b
	return nil
}

// setPrefixes maps each VIP to its /32 or /128 and returns the prefixes.
func (b *nodeBGP) setPrefixes(vips []VIP) []netip.Prefix {
	m := map[loader.ServiceKey]netip.Prefix{}
	var ps []netip.Prefix
	for _, v := range vips {
		p := bgp.HostPrefix(v.Key().VIP.Addr())
		m[v.Key()] = p
		ps = append(ps, p)
	}
	b.mu.Lock()
	b.prefixes = m
	b.mu.Unlock()
	return ps
}

// bgpSetVIPs follows a reload's VIP list: prefixes of removed VIPs are
// withdrawn, new ones announced once healthy.
func (n *Node) bgpSetVIPs(vips []VIP) {
	if n.bgp == nil {
		return
	}
	n.bgp.an.SetPrefixes(n.bgp.setPrefixes(vips))
	n.checkBGP()
}

// startBGP starts the speaker and the goroutine that checks the node's
// health when kicked and every bgpCheckEvery, and announces what is
// healthy already.
func (n *Node) startBGP(ctx context.Context) error {
	b := n.bgp
	if b == nil {
		return nil
	}
	if err := b.sp.Start(ctx); err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(context.Background())
	b.started, b.stop = true, cancel
	go func() {
		defer close(b.done)
		tick := time.NewTicker(bgpCheckEvery)
		defer tick.Stop()
		for {
			b.an.Update(n.health())
			select {
			case <-cctx.Done():
				return
			case <-b.kick:
			case <-tick.C:
			}
		}
	}()
	return nil
}

// health observes the node: data plane attached, registrar running, and
// per VIP prefix the active PEs of its best service, as the maps hold them
// (what the data plane enforces, not what the registrar heard).
func (n *Node) health() bgp.Health {
	h := bgp.Health{RegistrarUp: n.bgp.regUp.Load(), ActivePEs: map[netip.Prefix]int{}, Now: time.Now()}
	if err := n.lb.Attached(); err != nil {
		n.log.Warn("bgp: data plane not attached", "err", err)
	} else {
		h.DataplaneAttached = true
	}
	svcs, err := n.lb.Services()
	if err != nil {
		n.log.Warn("bgp: read services; counting no PEs", "err", err)
		return h
	}
	n.bgp.mu.Lock()
	defer n.bgp.mu.Unlock()
	for k, p := range n.bgp.prefixes {
		active := 0
		for _, b := range svcs[k] {
			if b.State == loader.Active && b.Weight > 0 {
				active++
			}
		}
		h.ActivePEs[p] = max(h.ActivePEs[p], active)
	}
	return h
}

// checkBGP asks for a health check soon; it never blocks.
func (n *Node) checkBGP() {
	if n.bgp == nil {
		return
	}
	select {
	case n.bgp.kick <- struct{}{}:
	default: // one is pending already
	}
}

// registrarStopped withdraws everything: the handlespace goes stale.
func (n *Node) registrarStopped() {
	if n.bgp == nil {
		return
	}
	n.bgp.regUp.Store(false)
	n.checkBGP()
}

// beginStop is the first step of a stop: it withdraws every VIP and
// returns a channel that fires after the drain, while the routers move the
// flows to other nodes and this node keeps forwarding and serving ENRP.
// With keep-on-exit and graceful restart nothing is withdrawn: the data
// plane stays for the next run and the routers keep the routes (stale)
// across the restart.
func (n *Node) beginStop() <-chan time.Time {
	if n.bgp == nil || !n.bgp.started {
		return time.After(0)
	}
	b := n.bgp
	if b.keep && b.cfg.GracefulRestart > 0 {
		n.log.Info("bgp: keep-on-exit with graceful restart: routes stay with the routers across the restart",
			"restart_time", b.cfg.GracefulRestart)
		return time.After(0)
	}
	if k := b.an.WithdrawAll(); k == 0 {
		return time.After(0)
	} else {
		n.log.Info("bgp: VIPs withdrawn; draining before leaving ENRP", "withdrawn", k, "drain", b.cfg.Drain)
	}
	return time.After(b.cfg.Drain)
}

// stopBGP ends the sessions (gracefully with keep-on-exit and graceful
// restart).
func (n *Node) stopBGP() {
	if n.bgp == nil || !n.bgp.started {
		return
	}
	n.bgp.stop()
	<-n.bgp.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.bgp.sp.Stop(ctx, n.bgp.keep && n.bgp.cfg.GracefulRestart > 0); err != nil {
		n.log.Warn("bgp: stop", "err", err)
	}
}

// bgpStatus is the BGP part of /status, nil without BGP.
func (n *Node) bgpStatus() *bgp.Status {
	if n.bgp == nil {
		return nil
	}
	st := n.bgp.an.Status()
	st.ASN, st.RouterID, st.Peers = n.bgp.cfg.ASN, n.bgp.cfg.RouterID, n.bgp.sp.Peers()
	return &st
}
