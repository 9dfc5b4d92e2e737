package node

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/enrp"
	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
)

// fakeRegistrar is a RegistrarView over a handlespace the test fills.
type fakeRegistrar struct {
	mu    sync.Mutex
	hs    *selector.Handlespace
	peers []uint32
	c     enrp.Counters
}

func (f *fakeRegistrar) Handlespace() *selector.Handlespace { return f.hs }
func (f *fakeRegistrar) Counters() enrp.Counters {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.c
}
func (f *fakeRegistrar) Peers() []uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint32(nil), f.peers...)
}
func (f *fakeRegistrar) StaticPeerStates() map[string]bool {
	return map[string]bool{"192.0.2.1:9901": true, "192.0.2.2:9901": false}
}
func (f *fakeRegistrar) setPeers(ids ...uint32) {
	f.mu.Lock()
	f.peers = ids
	f.mu.Unlock()
}

// fakeDataplane is a data plane with counters: the StatsSource and
// Dataplane a loader is.
type fakeDataplane struct {
	*fakeDP
	st loader.Stats
}

func (f fakeDataplane) Stats() (loader.Stats, error) { return f.st, nil }

// gather renders a registry's samples as name -> `{labels}` -> value, the
// form an operator sees at /metrics.
func gather(t *testing.T, m *Metrics) map[string]map[string]float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for _, mf := range mfs {
		series := map[string]float64{}
		for _, s := range mf.Metric {
			var ls []string
			for _, l := range s.Label {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			key := ""
			if len(ls) > 0 {
				key = "{" + strings.Join(ls, ",") + "}"
			}
			var v float64
			switch {
			case s.Counter != nil:
				v = s.Counter.GetValue()
			case s.Gauge != nil:
				v = s.Gauge.GetValue()
			case s.Histogram != nil:
				v = float64(s.Histogram.GetSampleCount())
			case s.Untyped != nil:
				v = s.Untyped.GetValue()
			}
			series[key] = v
		}
		out[mf.GetName()] = series
	}
	return out
}

// testMetrics is a node's metrics over two pools (web with two PEs, one
// draining; db with one), two VIPs in the maps, two peers, and rejected
// registrations of two causes.
func testMetrics(t *testing.T) (*Metrics, *fakeRegistrar) {
	t.Helper()
	now := time.Unix(1000, 0)
	hs, err := selector.New(selector.Config{DrainTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		pool string
		id   uint32
	}{{"web", 1}, {"web", 2}, {"db", 3}} {
		if _, err := hs.Register(r.pool, pe(r.id, policy.RoundRobin(), fmt.Sprintf("10.0.0.%d", r.id)), now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := hs.Deregister("web", 2, now); err != nil {
		t.Fatal(err)
	}
	rv := &fakeRegistrar{hs: hs, peers: []uint32{7, 8}}
	rv.c.RegistrationsRejected = 3
	rv.c.RejectedByCause[enrp.CauseLackOfResources] = 2
	rv.c.RejectedByCause[enrp.CauseRejectionDueToSecurity] = 1
	web, _ := ParseVIP("web=10.200.1.1:80/tcp")
	db, _ := ParseVIP("db=10.200.1.2:5432/tcp")
	dp := fakeDataplane{fakeDP: newFakeDP()}
	dp.svcs[web.Key()] = []loader.Backend{
		{ID: 1, Addr: netip.MustParseAddr("10.0.0.1"), Weight: 1, State: loader.Active},
		{ID: 2, Addr: netip.MustParseAddr("10.0.0.2"), State: loader.Draining},
	}
	dp.svcs[db.Key()] = []loader.Backend{{ID: 3, Addr: netip.MustParseAddr("10.0.0.3"), Weight: 1, State: loader.Active}}
	dp.st = loader.Stats{
		Services: map[loader.ServiceKey]loader.Counters{web.Key(): {Packets: 10, Bytes: 640}},
		Backends: map[loader.ServiceKey]map[uint32]loader.BackendCounters{web.Key(): {1: {Packets: 6, Bytes: 384, NewFlows: 2}}},
	}
	m := NewMetrics(dp, nil, []VIP{web, db}, nil)
	m.SetRegistrar(rv)
	m.ObserveResolution(20 * time.Microsecond)
	return m, rv
}

func TestMetricsLabels(t *testing.T) {
	m, rv := testMetrics(t)
	got := gather(t, m)
	tests := []struct {
		name, labels string
		want         float64
	}{
		{"rspxdp_pools", "", 2},
		{"rspxdp_pool_elements", `{pool="web",state="active"}`, 1},
		{"rspxdp_pool_elements", `{pool="web",state="draining"}`, 1},
		{"rspxdp_pool_elements", `{pool="db",state="active"}`, 1},
		{"rspxdp_pool_elements", `{pool="db",state="draining"}`, 0},
		{"rspxdp_dataplane_pool_elements", `{pool="web",state="active",vip="10.200.1.1:80/tcp"}`, 1},
		{"rspxdp_dataplane_pool_elements", `{pool="web",state="draining",vip="10.200.1.1:80/tcp"}`, 1},
		{"rspxdp_dataplane_pool_elements", `{pool="web",state="down",vip="10.200.1.1:80/tcp"}`, 0},
		{"rspxdp_dataplane_pool_elements", `{pool="db",state="active",vip="10.200.1.2:5432/tcp"}`, 1},
		{"rspxdp_enrp_peers", "", 2},
		{"rspxdp_enrp_static_peer_up", `{address="192.0.2.1:9901"}`, 1},
		{"rspxdp_enrp_static_peer_up", `{address="192.0.2.2:9901"}`, 0},
		{"rspxdp_enrp_peer_up", `{peer="0x00000007"}`, 1},
		{"rspxdp_enrp_peer_up", `{peer="0x00000008"}`, 1},
		{"rspxdp_registrations_rejected_total", `{cause="lack_of_resources"}`, 2},
		{"rspxdp_registrations_rejected_total", `{cause="rejection_due_to_security_considerations"}`, 1},
		{"rspxdp_registrations_rejected_total", `{cause="invalid_values"}`, 0},
		{"rspxdp_pe_new_flows_total", `{pe="0x00000001",pool="web",vip="10.200.1.1:80/tcp"}`, 2},
		{"rspxdp_handle_resolution_duration_seconds", "", 1},
	}
	for _, tc := range tests {
		v, ok := got[tc.name][tc.labels]
		if !ok || v != tc.want {
			t.Errorf("%s%s = %v (present %v), want %v; series: %v", tc.name, tc.labels, v, ok, tc.want, got[tc.name])
		}
	}
	// The standard collectors are on the node's registry too.
	for _, name := range []string{"go_goroutines", "process_start_time_seconds", "rspxdp_build_info"} {
		if got[name] == nil {
			t.Errorf("registry lacks %s", name)
		}
	}
	// A peer that died keeps its series, at 0.
	rv.setPeers(8)
	got = gather(t, m)
	if v, ok := got["rspxdp_enrp_peer_up"][`{peer="0x00000007"}`]; !ok || v != 0 {
		t.Errorf("dead peer 7: rspxdp_enrp_peer_up = %v (present %v), want 0", v, ok)
	}
	if v := got["rspxdp_enrp_peers"][""]; v != 1 {
		t.Errorf("rspxdp_enrp_peers = %v, want 1", v)
	}
}

func TestReadiness(t *testing.T) {
	rv := &fakeRegistrar{}
	tests := []struct {
		name    string
		peers   int
		wait    time.Duration
		setup   func(r *Readiness)
		alive   []uint32
		failing []string // checks that must fail, in order
	}{
		{name: "starting", setup: func(r *Readiness) { r.SetDataplane(false, nil) },
			failing: []string{"registrar", "dataplane"}},
		{name: "serving alone", setup: func(r *Readiness) { r.SetServing(true); r.SetDataplane(true, nil) }},
		{name: "no data plane to check", setup: func(r *Readiness) { r.SetServing(true) }},
		{name: "peers not heard yet", peers: 2, wait: time.Hour,
			setup: func(r *Readiness) { r.SetServing(true); r.SetDataplane(true, nil) }, failing: []string{"peers"}},
		{name: "a peer alive", peers: 2, wait: time.Hour, alive: []uint32{5},
			setup: func(r *Readiness) { r.SetServing(true); r.SetDataplane(true, nil) }},
		{name: "looked for peers long enough", peers: 2, wait: 0,
			setup: func(r *Readiness) { r.SetServing(true); r.SetDataplane(true, nil) }},
		{name: "sync failed", setup: func(r *Readiness) { r.SetServing(true); r.SetDataplane(true, errors.New("map full")) },
			failing: []string{"dataplane"}},
		{name: "leaving", setup: func(r *Readiness) { r.SetServing(true); r.SetDataplane(true, nil); r.SetServing(false) },
			failing: []string{"registrar"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rv.setPeers(tc.alive...)
			r := NewReadiness(rv, tc.peers, tc.wait)
			tc.setup(r)
			var failing []string
			for _, c := range r.Checks() {
				if err := c.Func(); err != nil {
					failing = append(failing, c.Name)
				}
			}
			if strings.Join(failing, ",") != strings.Join(tc.failing, ",") {
				t.Errorf("failing checks %v, want %v", failing, tc.failing)
			}
		})
	}
}

func TestPeerWaitDefaults(t *testing.T) {
	if got, want := PeerWait(0, 0), enrp.DefaultPeerMaxTimeLastHeard+enrp.DefaultPeerMaxTimeNoResponse; got != want {
		t.Errorf("PeerWait(0, 0) = %v, want %v", got, want)
	}
	if got := PeerWait(time.Second, 2*time.Second); got != 3*time.Second {
		t.Errorf("PeerWait(1s, 2s) = %v", got)
	}
}
