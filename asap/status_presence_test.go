package asap

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
	"github.com/rspxdp/rspxdp/transport"
	"github.com/rspxdp/rspxdp/wire"
)

// DumpHandlespace against a registrar that, like rsplib's, refuses a Handle
// Table Request from a server it has not heard a Presence from: the dump
// introduces itself with a Presence naming its own end of the association,
// then gets the table. A registrar that keeps refusing is an error, and one
// that answers at once never sees a Presence.
func TestDumpHandlespaceIntroducesItself(t *testing.T) {
	for _, tc := range []struct {
		name          string
		needsPresence bool // refuse until a Presence came
		alwaysRefuse  bool
		wantErr       string
		wantPresences int
	}{
		{name: "answers at once"},
		{name: "answers known servers only", needsPresence: true, wantPresences: 1},
		{name: "always refuses", alwaysRefuse: true, wantErr: "refused", wantPresences: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			tr, err := transport.NewTCP(transport.Config{Protocol: transport.ENRP, Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := tr.Listen(ctx, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			const registrarID = 0x5eed
			presences := make(chan msg.Presence, 4)
			go func() {
				c, err := ln.Accept(ctx)
				if err != nil {
					return
				}
				defer c.Close()
				known := false
				for {
					b, err := c.ReadMessage(ctx)
					if err != nil {
						return
					}
					m, err := msg.Decode(wire.ENRP, b)
					if err != nil {
						t.Errorf("registrar got an undecodable message: %v", err)
						return
					}
					var resp msg.HandleTableResponse
					switch m := m.(type) {
					case msg.Presence:
						if remote, rerr := netip.ParseAddrPort(c.RemoteAddr().String()); rerr != nil || m.Info.ENRP != remote || m.Info.ID != m.Sender {
							t.Errorf("Presence names %v (id %x, sender %x), the association comes from %v", m.Info.ENRP, m.Info.ID, m.Sender, c.RemoteAddr())
						}
						known = true
						presences <- m
						continue
					case msg.HandleTableRequest:
						resp.Header = msg.Header{Sender: registrarID, Receiver: m.Sender}
						if tc.alwaysRefuse || (tc.needsPresence && !known) {
							resp.Reject = true
						} else {
							resp.Pools = []msg.Pool{{Handle: "echo", PEs: []msg.PoolElement{{
								ID: 7, Home: registrarID, Lifetime: time.Minute, Policy: policy.RoundRobin(),
								Transport: selector.Transport{Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.7")},
									Port: 7, Protocol: selector.TCP, Use: selector.DataOnly},
							}}}}
						}
					default:
						continue
					}
					out, err := msg.Encode(resp)
					if err != nil {
						t.Errorf("encode: %v", err)
						return
					}
					if err := c.WriteMessage(ctx, out); err != nil {
						return
					}
				}
			}()
			d, err := DumpHandlespace(ctx, ln.Addr().String(), WithLogger(quiet()))
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("DumpHandlespace: %v, want an error saying %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("DumpHandlespace: %v", err)
			case d.Registrar != registrarID || len(d.Pools) != 1 || len(d.Pools[0].PEs) != 1:
				t.Fatalf("dump %+v, want registrar %x with pool echo's one PE", d, registrarID)
			}
			if got := len(presences); got != tc.wantPresences {
				t.Errorf("registrar heard %d Presence(s), want %d", got, tc.wantPresences)
			}
		})
	}
}
