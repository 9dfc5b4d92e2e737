package node

import (
	"net/netip"
	"testing"

	"github.com/rspxdp/rspxdp/loader"
)

type fakeStats loader.Stats

func (f fakeStats) Stats() (loader.Stats, error) { return loader.Stats(f), nil }

func TestStatusJoinsTablesAndCounters(t *testing.T) {
	v, _ := ParseVIP("web=10.200.1.1:80/tcp")
	idle, _ := ParseVIP("idle=[fc00::1]:53/udp")
	dp := newFakeDP()
	dp.svcs[v.Key()] = []loader.Backend{
		{ID: 9, Addr: netip.MustParseAddr("10.0.0.9"), Weight: 0, State: loader.Draining},
		{ID: 2, Addr: netip.MustParseAddr("10.0.0.2"), Weight: 3, State: loader.Active},
	}
	st := fakeStats{
		Services: map[loader.ServiceKey]loader.Counters{v.Key(): {Packets: 100, Bytes: 6400}},
		Backends: map[loader.ServiceKey]map[uint32]loader.BackendCounters{v.Key(): {2: {Packets: 60, Bytes: 3840, NewFlows: 7}, 9: {Packets: 40, Bytes: 2560, NewFlows: 5}}},
		ConnHits: 88, ConnMisses: 12,
		Drops: loader.Drops{NoPE: 1, BadHeader: 2, TooBig: 3},
	}
	got, err := buildStatus(dp, st, 42, nil, 1, []VIP{v, idle})
	if err != nil {
		t.Fatal(err)
	}
	if got.RegistrarID != 42 || got.Peers == nil || len(got.VIPs) != 2 {
		t.Fatalf("status header: %+v", got)
	}
	web := got.VIPs[0]
	if web.Pool != "web" || web.VIP != "10.200.1.1:80/tcp" || web.Packets != 100 || web.Bytes != 6400 || len(web.PEs) != 2 {
		t.Fatalf("web: %+v", web)
	}
	if p := web.PEs[0]; p.ID != 2 || p.State != "active" || p.Weight != 3 || p.NewFlows != 7 || p.Addr != "10.0.0.2" {
		t.Errorf("PE 2: %+v", p)
	}
	if p := web.PEs[1]; p.ID != 9 || p.State != "draining" || p.Weight != 0 || p.Packets != 40 {
		t.Errorf("PE 9: %+v", p)
	}
	if got.VIPs[1].PEs == nil || len(got.VIPs[1].PEs) != 0 {
		t.Errorf("a service without PEs must list none: %+v", got.VIPs[1])
	}
	if d := got.Dataplane; d.ConnHits != 88 || d.ConnMisses != 12 || d.DropNoPE != 1 || d.DropBadHeader != 2 || d.DropTooBig != 3 {
		t.Errorf("dataplane counters: %+v", d)
	}
}
