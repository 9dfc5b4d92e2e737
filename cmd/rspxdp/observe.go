package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rspxdp/rspxdp/enrp"
	"github.com/rspxdp/rspxdp/internal/telemetry"
	"github.com/rspxdp/rspxdp/node"
)

// registrarObs is the metrics listener of `rspxdp registrar`: the node's
// registrar metrics without a data plane, /healthz and /readyz.
type registrarObs struct {
	m     *node.Metrics
	ln    net.Listener
	srv   *telemetry.Server // once started
	peers int
	wait  time.Duration
}

// newRegistrarObs binds addr before the registrar starts, so a taken port
// fails the start, and hooks the resolution latency into cfg. An empty addr
// returns nil (every method is a no-op on nil).
func newRegistrarObs(addr string, cfg *enrp.ServerConfig) (*registrarObs, error) {
	if addr == "" {
		return nil, nil
	}
	o := &registrarObs{m: node.NewMetrics(nil, nil, nil, cfg.Logger), peers: len(cfg.Peers),
		wait: node.PeerWait(cfg.PeerMaxTimeLastHeard, cfg.PeerMaxTimeNoResponse)}
	cfg.ObserveResolution = o.m.ObserveResolution
	var err error
	if o.ln, err = net.Listen("tcp", addr); err != nil {
		return nil, fmt.Errorf("--metrics: listen %s: %w", addr, err)
	}
	return o, nil
}

// start serves the metrics of srv until close; the registrar counts as
// serving from now on until ctx ends (it then leaves: not ready).
func (o *registrarObs) start(ctx context.Context, srv *enrp.Server, log *slog.Logger) {
	if o == nil {
		return
	}
	o.m.SetRegistrar(srv)
	ready := node.NewReadiness(srv, o.peers, o.wait)
	ready.SetServing(true)
	o.srv = telemetry.NewServer(o.ln, telemetry.Mux(o.m.Registry(), ready.Checks()))
	serveMetrics(context.WithoutCancel(ctx), o.srv, log)
	go func() {
		<-ctx.Done()
		ready.SetServing(false)
	}()
}

// close stops serving (or releases the listener when the registrar did
// not start).
func (o *registrarObs) close() {
	switch {
	case o == nil:
	case o.srv != nil:
		_ = o.srv.Close()
	default:
		_ = o.ln.Close()
	}
}

// peObs is the metrics listener of `rspxdp pe`: the standard collectors,
// session counters, /healthz and /readyz (ready while registered and not
// draining).
type peObs struct {
	reg        *prometheus.Registry
	srv        *telemetry.Server
	registered atomic.Bool
	open       prometheus.Gauge
	total      prometheus.Counter
}

func newPEObs(addr string) (*peObs, error) {
	if addr == "" {
		return nil, nil
	}
	o := &peObs{reg: telemetry.NewRegistry(),
		open: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rspxdp_pe_sessions_open",
			Help: "Sessions of pool users this pool element serves now."}),
		total: prometheus.NewCounter(prometheus.CounterOpts{Name: "rspxdp_pe_sessions_total",
			Help: "Sessions of pool users this pool element accepted."}),
	}
	reg := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rspxdp_pe_registered",
		Help: "1 while the pool element is registered, 0 before and while draining."},
		func() float64 {
			if o.registered.Load() {
				return 1
			}
			return 0
		})
	o.reg.MustRegister(o.open, o.total, reg)
	checks := []telemetry.Check{{Name: "registered", Func: func() error {
		if !o.registered.Load() {
			return errors.New("not registered (registering or draining)")
		}
		return nil
	}}}
	var err error
	if o.srv, err = telemetry.Listen(addr, telemetry.Mux(o.reg, checks)); err != nil {
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	return o, nil
}

// serve serves the metrics until ctx ends.
func (o *peObs) serve(ctx context.Context, log *slog.Logger) {
	if o != nil {
		serveMetrics(ctx, o.srv, log)
	}
}

// close stops serving.
func (o *peObs) close() {
	if o != nil {
		_ = o.srv.Close()
	}
}

func serveMetrics(ctx context.Context, srv *telemetry.Server, log *slog.Logger) {
	go func() {
		if err := srv.Serve(ctx, log); err != nil {
			log.Error("metrics listener failed", "err", err)
		}
	}()
	log.Info("metrics listener up", "addr", srv.Addr().String(), "paths", "/metrics /healthz /readyz")
}

// setRegistered says whether the PE is registered (false once it drains).
func (o *peObs) setRegistered(on bool) {
	if o != nil {
		o.registered.Store(on)
	}
}

// session counts one served session; call the returned func when it ends.
func (o *peObs) session() func() {
	if o == nil {
		return func() {}
	}
	o.total.Inc()
	o.open.Inc()
	return o.open.Dec
}
