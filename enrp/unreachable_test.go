package enrp

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/wire"
)

// TestUnreachableAtNonHomeRegistrar: a report on a peer's PE is passed on
// to the home's ASAP endpoint, within a per-PE budget; past the budget, or
// with no live home to tell, it is counted locally and the local copy
// dropped at the threshold, silently.
func TestUnreachableAtNonHomeRegistrar(t *testing.T) {
	homeASAP := netip.MustParseAddrPort("127.0.0.1:3002")
	max := DefaultMaxBadPEReports
	for _, tc := range []struct {
		name        string
		homeKnown   bool // peer 2's Presence carried its ASAP address
		homeDead    bool
		reports     int
		pause       bool // a keep-alive period passes after the first max reports
		wantFwd     int
		wantRemoved bool
	}{
		{name: "passed on to the home", homeKnown: true, reports: 1, wantFwd: 1},
		{name: "home told enough to act, rest counted here", homeKnown: true, reports: 2 * max, wantFwd: max, wantRemoved: true},
		{name: "budget renews after a keep-alive period", homeKnown: true, reports: 2 * max, pause: true, wantFwd: 2 * max},
		{name: "home address unknown", reports: max, wantRemoved: true},
		{name: "home dead", homeKnown: true, homeDead: true, reports: max, wantRemoved: true},
		{name: "below the threshold", reports: max - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, now := newTestCore(t, 1)
			info := ServerInfo{ID: 2, ENRP: netip.MustParseAddrPort("127.0.0.1:9002")}
			if tc.homeKnown {
				info.ASAP = homeASAP
			}
			c.Step(2, netip.Addr{}, Presence{Header: Header{Sender: 2, Receiver: 1}, Checksum: 0xffff, Info: info})
			pe := testPE(5)
			pe.Home = 2
			c.Step(2, netip.Addr{}, HandleUpdate{Header: Header{Sender: 2, Receiver: 1}, Handle: "a", PE: pe})
			if tc.homeDead {
				c.peers[2].dead = true
			}
			c.Drain()
			fwd := 0
			for i := 0; i < tc.reports; i++ {
				if tc.pause && i == max {
					c.Tick(now.Add(c.cfg.KeepAliveInterval + c.cfg.KeepAliveTimeout))
				}
				c.Step(9, netip.Addr{}, EndpointUnreachable{Handle: "a", PEID: 5})
				for _, o := range c.Drain() {
					switch m := o.Msg.(type) {
					case EndpointUnreachable:
						if o.Dial != homeASAP || o.Link != 0 || m.PEID != 5 {
							t.Fatalf("report passed on as %+v", o)
						}
						fwd++
					case HandleUpdate:
						t.Fatalf("a non-home registrar replicated %+v", m)
					}
				}
			}
			if fwd != tc.wantFwd {
				t.Fatalf("%d reports passed on, want %d", fwd, tc.wantFwd)
			}
			if _, present := c.lookup("a", 5); present == tc.wantRemoved {
				t.Fatalf("PE present=%v after %d reports, want removed=%v", present, tc.reports, tc.wantRemoved)
			}
			if got := c.Counters().UnreachableForwarded; got != uint64(tc.wantFwd) {
				t.Fatalf("forwarded counter %d", got)
			}
		})
	}
}

// TestIntegrationUnreachableReportedToNonHome: a PU's reports to a
// registrar that is not the PE's home remove the PE everywhere.
func TestIntegrationUnreachableReportedToNonHome(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	waitPeers(t, nodes)
	pe := startPE(t, nodes[0].srv.ASAPAddr().String(), "echo", 500)
	t.Cleanup(pe.kill)
	if r, ok := pe.await(t).(RegistrationResponse); !ok || r.Reject {
		t.Fatalf("registration %+v", r)
	}
	if _, err := eventually(2*time.Second, func() bool { return converged(servers(nodes...), 1) }); err != nil {
		t.Fatal("PE not replicated")
	}
	pu := dialRPC(t, nodes[1].srv.ASAPAddr().String())
	defer pu.conn.Close()
	start := time.Now()
	for i := 0; i < DefaultMaxBadPEReports; i++ {
		b, err := Encode(EndpointUnreachable{Handle: "echo", PEID: 500})
		if err != nil {
			t.Fatal(err)
		}
		if err := pu.conn.WriteMessage(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	// The PE keeps answering its keep-alives: only the reports remove it.
	d, err := eventually(2*time.Second, func() bool { return converged(servers(nodes...), 0) })
	if err != nil {
		t.Fatalf("PE still registered (%d, %d) %v after %d reports to the non-home registrar",
			nodes[0].srv.Count(), nodes[1].srv.Count(), d, DefaultMaxBadPEReports)
	}
	if c := nodes[0].srv.Counters(); c.UnreachableRemovals != 1 {
		t.Fatalf("home removals %d, want 1 (the home decides)", c.UnreachableRemovals)
	}
	if c := nodes[1].srv.Counters(); c.UnreachableForwarded != uint64(DefaultMaxBadPEReports) {
		t.Fatalf("reports passed on %d, want %d", c.UnreachableForwarded, DefaultMaxBadPEReports)
	}
	t.Logf("PE removed everywhere %v after the first report was sent to the non-home registrar", time.Since(start))
}

// TestPresenceCarriesASAPEndpointAndLeaving: the ASAP endpoint travels in
// a parameter other implementations skip silently, nested in the Server
// Information (rsplib rejects a Presence with any other top-level
// parameter), the Leaving flag in a reserved bit; both survive a round
// trip.
func TestPresenceCarriesASAPEndpointAndLeaving(t *testing.T) {
	if a := msg.ParamASAPEndpoint.Action(); a != wire.ActionSkip || msg.ParamASAPEndpoint.Known() {
		t.Fatalf("private parameter action %v known=%v: receivers must skip it silently", a, msg.ParamASAPEndpoint.Known())
	}
	for _, p := range []Presence{
		{Header: Header{Sender: 1, Receiver: 2}, Checksum: 7, Leaving: true,
			Info: ServerInfo{ID: 1, ENRP: netip.MustParseAddrPort("192.0.2.1:9901"), ASAP: netip.MustParseAddrPort("192.0.2.1:3863"), Protocol: selector.TCP}},
		{Header: Header{Sender: 1, Receiver: 2}, Checksum: 7,
			Info: ServerInfo{ID: 1, ENRP: netip.MustParseAddrPort("192.0.2.1:9901"), Protocol: selector.TCP}},
	} {
		b, err := Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(wire.ENRP, b)
		if err != nil {
			t.Fatal(err)
		}
		if got != p {
			t.Fatalf("round trip %+v -> %+v", p, got)
		}
		var w wire.Message
		if err := (&wire.Decoder{}).Decode(wire.ENRP, b, &w); err != nil {
			t.Fatal(err)
		}
		if len(w.Params) != 2 || w.Params[0].Type != wire.ParamPEChecksum || w.Params[1].Type != wire.ParamServerInformation {
			t.Fatalf("Presence parameters %v, want exactly checksum and server information", w.Params)
		}
		if len(w.ReportCauses()) != 0 {
			t.Fatal("the private parameter would be reported as unrecognized")
		}
		if p.Leaving && b[1]&byte(wire.FlagLeaving) == 0 {
			t.Fatalf("flags %#x lack the Leaving bit", b[1])
		}
	}
}
