package node

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/asap"
	"github.com/rspxdp/rspxdp/enrp"
)

// describeService reads one service of the fake data plane under its lock.
func (f *fakeDP) describeService(v VIP) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return describe(f.svcs[v.Key()])
}

// The registrar calls the node before it sends what a change caused, so the
// data plane never lags what peers, PEs and PUs are told: when a PE holds
// its Registration Response, the maps already steer to it; when it holds
// its Deregistration Response, the maps already drain it. (A Handle Update
// to a peer leaves through the same flush as these responses.)
func TestDataPlaneProgrammedBeforeRegistrarAnswers(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	v, _ := ParseVIP("web=10.200.1.1:80/tcp")
	dp := newFakeDP()
	n := &Node{log: quiet}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := enrp.NewServer(ctx, enrp.ServerConfig{
		Config: enrp.Config{ID: 1, KeepAliveInterval: 100 * time.Millisecond, KeepAliveTimeout: 100 * time.Millisecond,
			DrainTimeout: time.Minute, Logger: quiet},
		ASAPListen: "127.0.0.1:0", ENRPListen: "127.0.0.1:0", BeforeSend: n.beforeSend,
		ObserveResolution: func(d time.Duration) { n.metrics.ObserveResolution(d) },
	})
	if err != nil {
		t.Fatal(err)
	}
	n.reg = srv
	n.sync = NewSyncer(srv.Handlespace(), dp, []VIP{v}, false, quiet)
	n.metrics = NewMetrics(nil, srv, []VIP{v}, quiet)
	n.sub = srv.Handlespace().Subscribe()
	defer n.sub.Close()
	if _, err := n.sync.Start(0); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pe, err := asap.Register(ctx, "web", ln, asap.WithRegistrars(srv.ASAPAddr().String()), asap.WithPEID(7), asap.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer pe.Close()
	if got := dp.describeService(v); got != "7:127.0.0.1:w1:active" {
		t.Fatalf("registration answered while the data plane holds %q, want PE 7 active", got)
	}
	if err := pe.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	if got := dp.describeService(v); got != "7:127.0.0.1:w0:draining" {
		t.Fatalf("deregistration answered while the data plane holds %q, want PE 7 draining", got)
	}

	// The registrar's counters and the resolution histogram reach /metrics.
	pu, err := asap.NewPoolUser(asap.WithRegistrars(srv.ASAPAddr().String()), asap.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pu.Resolve(ctx, "no-such-pool"); err == nil {
		t.Fatal("resolution of an unknown pool succeeded")
	}
	families, err := n.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				got[f.GetName()] += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				got[f.GetName()+"_count"] += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for name, want := range map[string]float64{
		"rspxdp_registrations_total":                      1,
		"rspxdp_deregistrations_total":                    1,
		"rspxdp_handle_resolutions_failed_total":          1,
		"rspxdp_handle_resolution_duration_seconds_count": 1,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}
