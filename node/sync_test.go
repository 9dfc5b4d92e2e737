package node

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
)

// fakeDP is a map-backed data plane with the loader's contract: services
// must exist before they get PEs; SetBackends replaces the whole set.
type fakeDP struct {
	mu    sync.Mutex
	svcs  map[loader.ServiceKey][]loader.Backend
	l2dsr map[loader.ServiceKey]bool
	sets  int
}

func newFakeDP() *fakeDP {
	return &fakeDP{svcs: map[loader.ServiceKey][]loader.Backend{}, l2dsr: map[loader.ServiceKey]bool{}}
}

func (f *fakeDP) UpsertService(s loader.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.svcs[s.ServiceKey]; !ok {
		f.svcs[s.ServiceKey] = nil
	}
	f.l2dsr[s.ServiceKey] = s.L2DSR
	return nil
}

func (f *fakeDP) RemoveService(k loader.ServiceKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.svcs[k]; !ok {
		return loader.ErrNotFound
	}
	delete(f.svcs, k)
	return nil
}

func (f *fakeDP) SetBackends(k loader.ServiceKey, b []loader.Backend) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.svcs[k]; !ok {
		return loader.ErrNotFound
	}
	f.sets++
	f.svcs[k] = slices.Clone(b)
	return nil
}

func (f *fakeDP) Services() (map[loader.ServiceKey][]loader.Backend, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[loader.ServiceKey][]loader.Backend{}
	for k, v := range f.svcs {
		out[k] = slices.Clone(v)
	}
	return out, nil
}

func pe(id uint32, s policy.Settings, addrs ...string) selector.PoolElement {
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	return selector.PoolElement{ID: id, Home: 1, Transport: selector.Transport{Addrs: as, Port: 7, Protocol: selector.TCP},
		Policy: s, Lifetime: time.Minute}
}

// describe renders a backend set compactly: "1:10.0.0.1:w3:active".
func describe(bs []loader.Backend) string {
	var s []string
	for _, b := range bs {
		s = append(s, fmt.Sprintf("%d:%s:w%d:%s", b.ID, b.Addr, b.Weight, b.State))
	}
	return strings.Join(s, " ")
}

func TestSyncFollowsHandlespace(t *testing.T) {
	now := time.Unix(1000, 0)
	hs, err := selector.New(selector.Config{DrainTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	v4, _ := ParseVIP("echo=10.200.1.1:7/tcp")
	v6, _ := ParseVIP("echo=[fc00:1::1]:7/tcp")
	dp := newFakeDP()
	s := NewSyncer(hs, dp, []VIP{v4, v6}, false, nil)
	if _, err := s.Start(0); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name   string
		do     func() error
		wantV4 string
		wantV6 string
	}{
		{"empty pool", func() error { return nil }, "", ""},
		{"three PEs, one without IPv6", func() error {
			for _, p := range []selector.PoolElement{
				pe(1, policy.WeightedRoundRobin(1), "10.0.0.1", "fc00::1"),
				pe(2, policy.WeightedRoundRobin(2), "10.0.0.2", "fc00::2"),
				pe(3, policy.WeightedRoundRobin(3), "10.0.0.3"),
			} {
				if _, err := hs.Register("echo", p, now); err != nil {
					return err
				}
			}
			return nil
		},
			"1:10.0.0.1:w1:active 2:10.0.0.2:w2:active 3:10.0.0.3:w3:active",
			"1:fc00::1:w1:active 2:fc00::2:w2:active"},
		{"PE 2 deregisters: draining, weight 0", func() error {
			_, err := hs.Deregister("echo", 2, now)
			return err
		},
			"1:10.0.0.1:w1:active 2:10.0.0.2:w0:draining 3:10.0.0.3:w3:active",
			"1:fc00::1:w1:active 2:fc00::2:w0:draining"},
		{"PE 3 fails keep-alive: gone at once", func() error {
			_, err := hs.Remove("echo", 3, selector.ReasonNone)
			return err
		},
			"1:10.0.0.1:w1:active 2:10.0.0.2:w0:draining",
			"1:fc00::1:w1:active 2:fc00::2:w0:draining"},
		{"PE 1 re-registers with a new weight", func() error {
			_, err := hs.Register("echo", pe(1, policy.WeightedRoundRobin(5), "10.0.0.1", "fc00::1"), now)
			return err
		},
			"1:10.0.0.1:w5:active 2:10.0.0.2:w0:draining",
			"1:fc00::1:w5:active 2:fc00::2:w0:draining"},
	}
	sub := hs.Subscribe()
	defer sub.Close()
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if err := s.Apply(sub.Drain()); err != nil {
			t.Fatalf("%s: apply: %v", st.name, err)
		}
		if got := describe(dp.svcs[v4.Key()]); got != st.wantV4 {
			t.Errorf("%s: v4 service = %q, want %q", st.name, got, st.wantV4)
		}
		if got := describe(dp.svcs[v6.Key()]); got != st.wantV6 {
			t.Errorf("%s: v6 service = %q, want %q", st.name, got, st.wantV6)
		}
	}
}

func TestStartAdoptsPinnedStateForGrace(t *testing.T) {
	hs, _ := selector.New(selector.Config{})
	v, _ := ParseVIP("echo=10.200.1.1:7/tcp")
	stale, _ := ParseVIP("old=10.200.1.9:7/tcp")
	dp := newFakeDP()
	// What a previous process left pinned: two PEs of echo, and a service
	// no longer configured.
	dp.svcs[v.Key()] = []loader.Backend{
		{ID: 1, Addr: netip.MustParseAddr("10.0.0.1"), Weight: 1, State: loader.Active},
		{ID: 2, Addr: netip.MustParseAddr("10.0.0.2"), Weight: 1, State: loader.Active},
	}
	dp.svcs[stale.Key()] = nil
	clock := time.Unix(5000, 0)
	s := NewSyncer(hs, dp, []VIP{v}, false, nil)
	s.now = func() time.Time { return clock }

	adopted, err := s.Start(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if adopted != 2 {
		t.Errorf("adopted %d PEs, want 2", adopted)
	}
	if _, ok := dp.svcs[stale.Key()]; ok {
		t.Error("unconfigured pinned service was not removed")
	}
	if got := describe(dp.svcs[v.Key()]); got != "1:10.0.0.1:w1:active 2:10.0.0.2:w1:active" {
		t.Fatalf("during grace, empty handlespace wiped adopted PEs: %q", got)
	}
	// PE 1 re-registers with the new registrar: it takes over its entry.
	if _, err := hs.Register("echo", pe(1, policy.RoundRobin(), "10.0.0.1"), clock); err != nil {
		t.Fatal(err)
	}
	if err := s.SyncPool("echo"); err != nil {
		t.Fatal(err)
	}
	if got := describe(dp.svcs[v.Key()]); got != "1:10.0.0.1:w1:active 2:10.0.0.2:w1:active" {
		t.Fatalf("after PE 1 re-registered in grace: %q", got)
	}
	// PE 1, now known to the handlespace, dies within the grace: it goes,
	// the adopted copy does not bring it back.
	if _, err := hs.Remove("echo", 1, selector.ReasonNone); err != nil {
		t.Fatal(err)
	}
	if err := s.SyncPool("echo"); err != nil {
		t.Fatal(err)
	}
	if got := describe(dp.svcs[v.Key()]); got != "2:10.0.0.2:w1:active" {
		t.Fatalf("PE 1 died in grace after re-registering; data plane holds %q, want only adopted PE 2", got)
	}
	// Grace over: PE 2 never came back, reconciliation removes it and says so.
	clock = clock.Add(31 * time.Second)
	repairs, err := s.Reconcile()
	if err != nil {
		t.Fatal(err)
	}
	if len(repairs) != 1 || !strings.Contains(repairs[0].What, "PE 2 stale") {
		t.Fatalf("repairs = %+v, want one saying PE 2 is stale", repairs)
	}
	if got := describe(dp.svcs[v.Key()]); got != "" {
		t.Fatalf("after grace: %q, want no PE", got)
	}
}

func TestReconcileRepairsDrift(t *testing.T) {
	now := time.Unix(1000, 0)
	hs, _ := selector.New(selector.Config{})
	v, _ := ParseVIP("echo=10.200.1.1:7/tcp")
	dp := newFakeDP()
	s := NewSyncer(hs, dp, []VIP{v}, true, nil)
	for i := uint32(1); i <= 3; i++ {
		if _, err := hs.Register("echo", pe(i, policy.RoundRobin(), fmt.Sprintf("10.0.0.%d", i)), now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Start(0); err != nil {
		t.Fatal(err)
	}
	if !dp.l2dsr[v.Key()] {
		t.Error("service not programmed for L2 DSR")
	}
	repairs, err := s.Reconcile()
	if err != nil || len(repairs) != 0 {
		t.Fatalf("in-sync data plane: repairs %+v, err %v", repairs, err)
	}
	// Drift of every kind: a wrong weight, a missing PE, a stale PE, and a
	// whole service removed behind the node's back.
	dp.svcs[v.Key()] = []loader.Backend{
		{ID: 1, Addr: netip.MustParseAddr("10.0.0.1"), Weight: 9, State: loader.Active},
		{ID: 2, Addr: netip.MustParseAddr("10.0.0.2"), Weight: 1, State: loader.Down},
		{ID: 7, Addr: netip.MustParseAddr("10.0.0.7"), Weight: 1, State: loader.Active},
	}
	repairs, err = s.Reconcile()
	if err != nil {
		t.Fatal(err)
	}
	if len(repairs) != 1 {
		t.Fatalf("repairs = %+v, want one for the service", repairs)
	}
	for _, want := range []string{"PE 1 weight 9, want 1", "PE 2 down, want active", "PE 3 missing", "PE 7 stale"} {
		if !strings.Contains(repairs[0].What, want) {
			t.Errorf("repair %q does not say %q", repairs[0].What, want)
		}
	}
	delete(dp.svcs, v.Key())
	repairs, err = s.Reconcile()
	if err != nil || len(repairs) != 1 || repairs[0].What != "added a missing service" {
		t.Fatalf("after service removal: repairs %+v, err %v", repairs, err)
	}
	if got := describe(dp.svcs[v.Key()]); got != "1:10.0.0.1:w1:active 2:10.0.0.2:w1:active 3:10.0.0.3:w1:active" {
		t.Fatalf("after repair: %q", got)
	}
}
