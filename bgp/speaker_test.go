package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

func testLogger() *slog.Logger {
	if os.Getenv("BGP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// freePort returns a TCP port that was free a moment ago on addr.
func freePort(t *testing.T, addr string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Skipf("no %s to listen on: %v", addr, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// router is a plain GoBGP server standing in for the upstream router: it
// listens on loopback, accepts the speaker's session passively and lets the
// test read what it learned.
type router struct {
	t    *testing.T
	srv  *server.BgpServer
	port int
}

func newRouter(t *testing.T, grHelper bool, neighbors ...string) *router {
	t.Helper()
	port := freePort(t, "127.0.0.1")
	srv := server.NewBgpServer()
	go srv.Serve()
	ctx := context.Background()
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: 65000, RouterId: "192.0.2.254",
		ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1", "::1"}}}); err != nil {
		t.Fatalf("router: %v", err)
	}
	t.Cleanup(func() { _ = srv.StopBgp(context.Background(), &api.StopBgpRequest{}) })
	for _, n := range neighbors {
		fam := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
		if strings.Contains(n, ":") {
			fam = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
		}
		p := &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: n, PeerAsn: 65001, AuthPassword: "s3cret"},
			Transport: &api.Transport{PassiveMode: true},
			Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 3, KeepaliveInterval: 1}},
			AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: fam, Enabled: true}}},
		}
		if grHelper {
			p.GracefulRestart = &api.GracefulRestart{Enabled: true, HelperOnly: true, RestartTime: 30}
			p.AfiSafis[0].MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: p}); err != nil {
			t.Fatalf("router: add peer %s: %v", n, err)
		}
	}
	return &router{t: t, srv: srv, port: port}
}

// learned returns the router's routes of a family: prefix -> "nexthop
// communities".
func (r *router) learned(fam bgp.Family) map[string]string {
	out := map[string]string{}
	err := r.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: fam},
		func(prefix bgp.NLRI, paths []*apiutil.Path) {
			for _, p := range paths {
				var nh netip.Addr
				var comms []string
				for _, a := range p.Attrs {
					switch v := a.(type) {
					case *bgp.PathAttributeNextHop:
						nh = v.Value
					case *bgp.PathAttributeMpReachNLRI:
						nh = v.Nexthop
					case *bgp.PathAttributeCommunities:
						for _, c := range v.Value {
							comms = append(comms, fmt.Sprintf("%d:%d", c>>16, c&0xffff))
						}
					}
				}
				out[prefix.String()] = strings.TrimSpace(nh.String() + " " + strings.Join(comms, ","))
			}
		})
	if err != nil {
		r.t.Fatalf("router: list paths: %v", err)
	}
	return out
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func established(s *Speaker, n int) func() bool {
	return func() bool {
		k := 0
		for _, p := range s.Peers() {
			if p.State == "established" {
				k++
			}
		}
		return k == n
	}
}

// TestSpeakerAnnouncesToARouter runs the speaker against a GoBGP router on
// loopback, over IPv4 and IPv6 sessions with TCP-MD5: a v4 VIP reaches the
// v4 session with next hop self (the session's local address) and the
// communities, a v6 VIP the v6 session, and a withdrawal removes them.
func TestSpeakerAnnouncesToARouter(t *testing.T) {
	if _, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	r := newRouter(t, false, "127.0.0.1", "::1")
	cfg := Config{ASN: 65001, RouterID: "192.0.2.1", ListenPort: -1, Communities: []string{"65001:7", "no-export"},
		Peers: []PeerConfig{
			{Address: "127.0.0.1", ASN: 65000, Port: uint16(r.port), Password: "s3cret", HoldTime: 3 * time.Second, ConnectRetry: time.Second},
			{Address: "::1", ASN: 65000, Port: uint16(r.port), Password: "s3cret", HoldTime: 3 * time.Second, ConnectRetry: time.Second},
		}}
	s, err := NewSpeaker(cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var states []string
	s.OnState(func(p PeerStatus) {
		mu.Lock()
		defer mu.Unlock()
		states = append(states, p.Address+" "+p.State)
	})
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(ctx, false)
	waitFor(t, "both sessions established", 20*time.Second, established(s, 2))
	mu.Lock()
	if !slices.Contains(states, "127.0.0.1 established") {
		t.Errorf("state callbacks %v lack the v4 session's establishment", states)
	}
	mu.Unlock()
	for _, p := range []netip.Prefix{vip4, vip6} {
		if err := s.Announce(p); err != nil {
			t.Fatal(err)
		}
		if err := s.Announce(p); err != nil {
			t.Fatalf("second announce of %s: %v", p, err)
		}
	}
	want4 := map[string]string{vip4.String(): "127.0.0.1 65001:7,65535:65281"}
	want6 := map[string]string{vip6.String(): "::1 65001:7,65535:65281"}
	waitFor(t, "the router learns both VIPs", 10*time.Second, func() bool {
		return fmt.Sprint(r.learned(bgp.RF_IPv4_UC)) == fmt.Sprint(want4) && fmt.Sprint(r.learned(bgp.RF_IPv6_UC)) == fmt.Sprint(want6)
	})
	if err := s.Withdraw(vip4); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the router forgets the v4 VIP", 10*time.Second, func() bool {
		return len(r.learned(bgp.RF_IPv4_UC)) == 0 && len(r.learned(bgp.RF_IPv6_UC)) == 1
	})
	if err := s.Withdraw(vip4); err != nil {
		t.Fatalf("second withdrawal: %v", err)
	}
}

// TestSpeakerGracefulRestart: stopping with graceful restart closes the
// session without a NOTIFICATION, so a helper router keeps the route as
// stale (keep-on-exit: the data plane still forwards); a plain stop makes
// it drop the route at once.
func TestSpeakerGracefulRestart(t *testing.T) {
	for _, tc := range []struct {
		name     string
		graceful bool
		wantKept bool
		restart  time.Duration
	}{
		{"graceful", true, true, 30 * time.Second},
		{"plain stop", false, false, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRouter(t, true, "127.0.0.1")
			cfg := Config{ASN: 65001, RouterID: "192.0.2.1", ListenPort: -1, GracefulRestart: tc.restart,
				Peers: []PeerConfig{{Address: "127.0.0.1", ASN: 65000, Port: uint16(r.port), Password: "s3cret", HoldTime: 3 * time.Second, ConnectRetry: time.Second}}}
			s, err := NewSpeaker(cfg, testLogger())
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "session established", 20*time.Second, established(s, 1))
			if err := s.Announce(vip4); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the router learns the VIP", 10*time.Second, func() bool { return len(r.learned(bgp.RF_IPv4_UC)) == 1 })
			if err := s.Stop(ctx, tc.graceful); err != nil {
				t.Fatal(err)
			}
			if !tc.wantKept {
				waitFor(t, "the router drops the VIP", 10*time.Second, func() bool { return len(r.learned(bgp.RF_IPv4_UC)) == 0 })
				return
			}
			// Longer than the hold time: the helper keeps the stale
			// route for the restart time, not the hold time.
			time.Sleep(4 * time.Second)
			if got := r.learned(bgp.RF_IPv4_UC); len(got) != 1 {
				t.Fatalf("router routes %v after a graceful stop, want the VIP kept (stale)", got)
			}
		})
	}
}

func TestNewSpeakerRefusesBadConfig(t *testing.T) {
	if _, err := NewSpeaker(Config{}, nil); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("empty config: err %v", err)
	}
	if _, err := NewSpeaker(Config{ASN: 1}, nil); err == nil || !strings.Contains(err.Error(), "bgp.router-id") {
		t.Errorf("no router id: err %v", err)
	}
}
