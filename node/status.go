package node

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"

	"github.com/rspxdp/rspxdp/bgp"
	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/wire"
)

// Status is what a node reports about itself at /status: its registrar,
// and per virtual service the PEs the data plane holds with their states,
// weights and counters — the data-plane half that `rspxdp status --node`
// prints next to the handlespace.
type Status struct {
	RegistrarID wire.ID         `json:"registrar_id"`
	Peers       []wire.ID       `json:"enrp_peers"`
	Pools       int             `json:"pools"`
	VIPs        []VIPStatus     `json:"vips"`
	Dataplane   DataplaneStatus `json:"dataplane"`
	// BGP is the speaker's sessions and announcements (absent without BGP).
	BGP *bgp.Status `json:"bgp,omitempty"`
}

// VIPStatus is one virtual service as the maps hold it.
type VIPStatus struct {
	Pool    string     `json:"pool"`
	VIP     string     `json:"vip"`
	Packets uint64     `json:"packets"`
	Bytes   uint64     `json:"bytes"`
	PEs     []PEStatus `json:"pes"`
}

// PEStatus is one PE of a service in the data plane.
type PEStatus struct {
	ID       wire.ID `json:"id"`
	Addr     string  `json:"addr"`
	State    string  `json:"state"`
	Weight   uint32  `json:"weight"`
	Packets  uint64  `json:"packets"`
	Bytes    uint64  `json:"bytes"`
	NewFlows uint64  `json:"new_flows"`
}

// DataplaneStatus are the data plane's global counters.
type DataplaneStatus struct {
	ConnHits      uint64 `json:"conn_hits"`
	ConnMisses    uint64 `json:"conn_misses"`
	Resteered     uint64 `json:"resteered"`
	FloodSkipped  uint64 `json:"flood_skipped"`
	DropNoPE      uint64 `json:"drop_no_pe"`
	DropBadHeader uint64 `json:"drop_bad_header"`
	DropTooBig    uint64 `json:"drop_too_big"`
	// DropControl counts packets to a control port from a source outside
	// the control networks; DropUndeliverable packets steered to a PE the
	// data plane had no egress interface for (not counted as sent).
	DropControl       uint64 `json:"drop_control"`
	DropUndeliverable uint64 `json:"drop_undeliverable"`
}

// Status reads the node's state: the PE tables from the maps, the counters
// from the per-CPU maps.
func (n *Node) Status() (Status, error) {
	st, err := buildStatus(n.lb, n.lb, n.reg.ID(), n.reg.Peers(), len(n.reg.Handlespace().Pools()), n.config().VIPs)
	st.BGP = n.bgpStatus()
	return st, err
}

func buildStatus(dp Dataplane, stats StatsSource, id uint32, peers []uint32, pools int, vips []VIP) (Status, error) {
	st := Status{RegistrarID: wire.ID(id), Peers: make([]wire.ID, len(peers)), Pools: pools, VIPs: []VIPStatus{}}
	for i, p := range peers {
		st.Peers[i] = wire.ID(p)
	}
	svcs, err := dp.Services()
	if err != nil {
		return st, fmt.Errorf("status: read services: %w", err)
	}
	c, err := stats.Stats()
	if err != nil {
		return st, fmt.Errorf("status: read counters: %w", err)
	}
	for _, v := range vips {
		k := v.Key()
		vs := VIPStatus{Pool: v.Handle, VIP: fmtKey(k), Packets: c.Services[k].Packets, Bytes: c.Services[k].Bytes, PEs: []PEStatus{}}
		for _, b := range svcs[k] {
			pc := c.Backends[k][b.ID]
			vs.PEs = append(vs.PEs, PEStatus{ID: wire.ID(b.ID), Addr: b.Addr.String(), State: b.State.String(), Weight: b.Weight,
				Packets: pc.Packets, Bytes: pc.Bytes, NewFlows: pc.NewFlows})
		}
		sort.Slice(vs.PEs, func(i, j int) bool { return vs.PEs[i].ID < vs.PEs[j].ID })
		st.VIPs = append(st.VIPs, vs)
	}
	st.Dataplane = DataplaneStatus{ConnHits: c.ConnHits, ConnMisses: c.ConnMisses, Resteered: c.Resteered,
		FloodSkipped: c.FloodSkipped, DropNoPE: c.Drops.NoPE, DropBadHeader: c.Drops.BadHeader, DropTooBig: c.Drops.TooBig,
		DropControl: c.Drops.Control, DropUndeliverable: c.Drops.Undeliverable}
	return st, nil
}

func (n *Node) serveStatus(w http.ResponseWriter, _ *http.Request) {
	st, err := n.Status()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(st)
}

var _ StatsSource = (*loader.Loader)(nil)
