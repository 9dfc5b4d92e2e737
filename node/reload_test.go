package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/netns"
	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/loader/loadertest"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
)

// callsDP records which services a data plane was asked to change, and can
// be told to fail on one.
type callsDP struct {
	*fakeDP
	touched map[loader.ServiceKey]int
	failOn  loader.ServiceKey
}

func (c *callsDP) UpsertService(s loader.Service) error {
	if s.ServiceKey == c.failOn {
		return errors.New("injected failure")
	}
	c.touched[s.ServiceKey]++
	return c.fakeDP.UpsertService(s)
}

func (c *callsDP) RemoveService(k loader.ServiceKey) error {
	c.touched[k]++
	return c.fakeDP.RemoveService(k)
}

func (c *callsDP) SetBackends(k loader.ServiceKey, b []loader.Backend) error {
	c.touched[k]++
	return c.fakeDP.SetBackends(k, b)
}

func mustVIP(t *testing.T, s string) VIP {
	t.Helper()
	v, err := ParseVIP(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSyncerSetVIPs: a new VIP list leaves the services that stay alone
// (their established flows go on), removes the dropped ones and programs
// the new ones from the handlespace; a failure restores the old list.
func TestSyncerSetVIPs(t *testing.T) {
	now := time.Unix(1000, 0)
	hs, _ := selector.New(selector.Config{})
	for i, pool := range []string{"echo", "web"} {
		if _, err := hs.Register(pool, pe(uint32(i+1), policy.RoundRobin(), fmt.Sprintf("10.0.0.%d", i+1), "fc00::1"), now); err != nil {
			t.Fatal(err)
		}
	}
	a, b := mustVIP(t, "echo=10.200.1.1:7/tcp"), mustVIP(t, "web=10.200.1.2:80/tcp")
	c, moved := mustVIP(t, "echo=[fc00:1::1]:7/udp"), mustVIP(t, "echo=10.200.1.2:80/tcp")
	dp := &callsDP{fakeDP: newFakeDP(), touched: map[loader.ServiceKey]int{}}
	s := NewSyncer(hs, dp, []VIP{a, b}, false, nil)
	if _, err := s.Start(0); err != nil {
		t.Fatal(err)
	}
	clear(dp.touched)

	if err := s.SetVIPs([]VIP{a, c}); err != nil {
		t.Fatal(err)
	}
	if n := dp.touched[a.Key()]; n != 0 {
		t.Errorf("the VIP that stayed was changed %d times", n)
	}
	if _, ok := dp.svcs[b.Key()]; ok {
		t.Errorf("removed VIP %s still programmed", b)
	}
	if got := describe(dp.svcs[c.Key()]); got != "1:fc00::1:w1:active" {
		t.Errorf("new VIP %s programmed with %q", c, got)
	}

	// The same address for another pool is a new service.
	clear(dp.touched)
	if err := s.SetVIPs([]VIP{a, c, moved}); err != nil {
		t.Fatal(err)
	}
	if got := describe(dp.svcs[moved.Key()]); got != "1:10.0.0.1:w1:active" || dp.touched[a.Key()] != 0 || dp.touched[c.Key()] != 0 {
		t.Errorf("VIP moved to pool echo: %q, touched %v", got, dp.touched)
	}

	// A failure half way restores the previous list and its services.
	bad := mustVIP(t, "web=10.200.1.9:80/tcp")
	dp.failOn = bad.Key()
	err := s.SetVIPs([]VIP{a, bad})
	if err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("SetVIPs with a failing service: %v", err)
	}
	for _, v := range []VIP{a, c, moved} {
		if len(dp.svcs[v.Key()]) != 1 {
			t.Errorf("after the failed change %s holds %q, want its PE back", v, describe(dp.svcs[v.Key()]))
		}
	}
	if got := slices.Collect(func(yield func(string) bool) {
		for _, vs := range s.vips {
			for _, v := range vs {
				yield(v.String())
			}
		}
	}); len(got) != 3 {
		t.Errorf("after the failed change the syncer has VIPs %v, want the previous three", got)
	}
}

// TestRestartFields: a reload accepts changes of the reloadable fields and
// names every other one.
func TestRestartFields(t *testing.T) {
	old := validConfig()
	cur := old
	cur.VIPs = append(slices.Clone(old.VIPs), mustVIP(t, "web=10.200.1.2:80/tcp"))
	cur.Registrar.Peers = []string{"192.0.2.9:9901"}
	cur.LogLevel = "debug"
	cur.Dataplane.ControlNetworks = []string{"192.0.2.0/24"}
	if f := restartFields(old, cur); len(f) != 0 {
		t.Errorf("reloadable changes need a restart: %v", f)
	}
	cur.Dataplane.Interfaces = []string{"eth1"}
	cur.Dataplane.Seed = 7
	cur.Registrar.Timers.KeepAliveInterval = Duration(time.Second)
	want := []string{"registrar.timers.keepalive-interval", "dataplane.interfaces", "dataplane.seed"}
	if f := restartFields(old, cur); !slices.Equal(f, want) {
		t.Errorf("restart fields %v, want %v", f, want)
	}
}

// TestNodeReload: a running node takes a new VIP list, peers, log level and
// control networks from Reload, leaves the services that stay as they were,
// and refuses a change that needs a restart without changing anything.
func TestNodeReload(t *testing.T) {
	ns := netns.New(t, "reload")
	if _, _, err := netns.Veth(ns, "c0", ns, "c1"); err != nil {
		t.Fatal(err)
	}
	cfg := Defaults()
	cfg.Registrar.ASAP, cfg.Registrar.ENRP, cfg.Metrics = "127.0.0.1:0", "127.0.0.1:0", ""
	cfg.Dataplane.Interfaces = []string{"c0"}
	cfg.Dataplane.Mode = "generic"
	cfg.Dataplane.PinDir = loadertest.PinDir(t)
	cfg.Dataplane.ConnTableSize = 4096 // capacity is not the subject
	cfg.ReconcileEvery = Duration(time.Hour)
	cfg.Registrar.ID = 0x1234
	a := mustVIP(t, "echo=10.200.1.1:7/tcp")
	cfg.VIPs = []VIP{a}
	lv := new(slog.LevelVar)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n *Node
	if err := ns.Do(func() (err error) {
		n, err = New(ctx, cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: lv})), WithLevel(lv))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	services := func() map[loader.ServiceKey][]loader.Backend {
		t.Helper()
		s, err := n.Loader().Services()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Wait for Run's first programming.
	for deadline := time.Now().Add(10 * time.Second); len(services()) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("node never programmed its VIP")
		}
	}

	next := cfg
	b := mustVIP(t, "web=10.200.1.2:80/tcp")
	next.VIPs = []VIP{a, b}
	next.Registrar.Peers = []string{"127.0.0.1:1"}
	next.LogLevel = "debug"
	next.Dataplane.ControlNetworks = []string{"192.0.2.0/24"}
	if err := n.Reload(next); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if s := services(); len(s) != 2 {
		t.Errorf("after the reload the data plane holds %d services, want 2", len(s))
	}
	if lv.Level() != slog.LevelDebug {
		t.Errorf("log level %v after the reload, want debug", lv.Level())
	}
	if p := n.Registrar().StaticPeers(); !slices.Equal(p, next.Registrar.Peers) {
		t.Errorf("static peers %v, want %v", p, next.Registrar.Peers)
	}
	if st, err := n.Status(); err != nil || len(st.VIPs) != 2 {
		t.Errorf("status after the reload: %d VIPs, %v", len(st.VIPs), err)
	}

	// A change that needs a restart, with a VIP change: nothing applies.
	bad := next
	bad.VIPs = []VIP{a}
	bad.Dataplane.Interfaces = []string{"c1"}
	err := n.Reload(bad)
	if err == nil || !strings.Contains(err.Error(), "dataplane.interfaces") {
		t.Fatalf("reload with another interface: %v, want an error naming dataplane.interfaces", err)
	}
	if s := services(); len(s) != 2 {
		t.Errorf("a refused reload changed the data plane: %d services", len(s))
	}
	bad = next
	bad.VIPs = []VIP{{Handle: "x", Address: "nonsense", Protocol: "tcp"}}
	if err := n.Reload(bad); err == nil || !strings.Contains(err.Error(), "vips[0].address") {
		t.Fatalf("reload with a bad VIP: %v", err)
	}
	if _, ok := services()[b.Key()]; !ok {
		t.Errorf("a refused reload removed %s", b)
	}
}

// testWriter sends log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
