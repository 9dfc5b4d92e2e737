package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rspxdp/rspxdp/bgp"
	"github.com/rspxdp/rspxdp/node"
	"github.com/rspxdp/rspxdp/wire"
)

func TestStatusNodeShowsTheDataPlane(t *testing.T) {
	st := node.Status{RegistrarID: 0x2a, Peers: []wire.ID{7}, Pools: 1,
		VIPs: []node.VIPStatus{{Pool: "web", VIP: "10.200.1.1:80/tcp", Packets: 100, Bytes: 6400, PEs: []node.PEStatus{
			{ID: 2, Addr: "10.0.0.2", State: "active", Weight: 3, Packets: 60, Bytes: 3840, NewFlows: 7},
			{ID: 9, Addr: "10.0.0.9", State: "draining", Weight: 0, Packets: 40, Bytes: 2560, NewFlows: 5},
		}}},
		Dataplane: node.DataplaneStatus{ConnHits: 88, ConnMisses: 12, DropNoPE: 1},
		BGP: &bgp.Status{ASN: 65001, RouterID: "10.0.0.11",
			Peers:       []bgp.PeerStatus{{Address: "10.0.0.1", ASN: 65000, State: "established"}},
			VIPs:        []bgp.VIPStatus{{Prefix: "10.200.1.1/32", Announced: false, Reason: bgp.ReasonTooFewPEs}},
			Withdrawals: map[bgp.Reason]uint64{bgp.ReasonTooFewPEs: 2}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	code, out, errs := runCLI(t, "status", "--node", addr)
	if code != 0 {
		t.Fatalf("status --node: code %d, stderr %q", code, errs)
	}
	for _, want := range []string{
		"node 0x0000002a: 1 pool(s), 1 ENRP peer(s)",
		"conn table 88 hits, 12 misses",
		`vip 10.200.1.1:80/tcp -> pool "web": 100 packets, 6400 bytes`,
		"0x00000002   10.0.0.2",
		"draining",
		"bgp: AS 65001, router id 10.0.0.11",
		"peer 10.0.0.1",
		"established",
		"10.200.1.1/32                           withdrawn (too-few-pes)",
		"withdrawals: too-few-pes 2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI(t, "status", "--node", addr, "--json")
	var back node.Status
	if code != 0 || json.Unmarshal([]byte(out), &back) != nil || back.VIPs[0].PEs[1].State != "draining" {
		t.Fatalf("status --node --json: code %d, %q", code, out)
	}
	// Identifiers in JSON are written as everywhere else (issue 18).
	for _, want := range []string{`"registrar_id":"0x0000002a"`, `"enrp_peers":["0x00000007"]`, `"id":"0x00000009"`} {
		if !strings.Contains(out, want) {
			t.Errorf("status --node --json lacks %s:\n%s", want, out)
		}
	}
	if back.RegistrarID != 0x2a || back.VIPs[0].PEs[1].ID != 9 {
		t.Errorf("status JSON read back as registrar %v, PE %v", back.RegistrarID, back.VIPs[0].PEs[1].ID)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"status"}, 2, "give one of --registrar or --node"},
		{[]string{"status", "--node", addr, "--registrar", "127.0.0.1:9901"}, 2, "give one of"},
		{[]string{"status", "--node", "nohostport"}, 2, "--node"},
		{[]string{"status", "--node", "127.0.0.1:1", "--timeout", "500ms"}, 1, "node 127.0.0.1:1 unreachable"},
	} {
		code, _, errs := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("rspxdp %v: code %d stderr %q, want %d and %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
}
