package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// OnState sets a function told of every session state change (the
// announcer's metrics); call it before Start.
func (s *Speaker) OnState(fn func(PeerStatus)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onState = fn
}

// PeerStatus is one BGP session as the speaker sees it.
type PeerStatus struct {
	Address string `json:"address"`
	ASN     uint32 `json:"asn"`
	// State is idle, connect, active, opensent, openconfirm or
	// established.
	State string    `json:"state"`
	Since time.Time `json:"since"`
}

// Speaker is an in-process BGP speaker (GoBGP) that originates the node's
// VIP prefixes towards its configured peers.
type Speaker struct {
	cfg         Config
	log         *slog.Logger
	communities []uint32
	srv         *server.BgpServer
	// onState, when set, is told of every session state change.
	onState func(PeerStatus)

	mu     sync.Mutex
	peers  map[netip.Addr]*PeerStatus
	routes map[netip.Prefix]uuid.UUID
}

// NewSpeaker validates cfg and returns a speaker that is not started.
func NewSpeaker(cfg Config, log *slog.Logger) (*Speaker, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, errors.New("bgp: not configured")
	}
	cfg = cfg.WithDefaults()
	s := &Speaker{cfg: cfg, log: log, peers: map[netip.Addr]*PeerStatus{}, routes: map[netip.Prefix]uuid.UUID{}}
	for _, c := range cfg.Communities {
		v, _ := ParseCommunity(c) // validated
		s.communities = append(s.communities, v)
	}
	for _, p := range cfg.Peers {
		a := netip.MustParseAddr(p.Address)
		s.peers[a] = &PeerStatus{Address: a.String(), ASN: p.ASN, State: "idle", Since: time.Now()}
	}
	return s, nil
}

// Start starts the BGP server, listening on the configured port unless it
// is -1, and adds every peer; sessions come up in the background.
func (s *Speaker) Start(ctx context.Context) error {
	// GoBGP's own log is chatty at info (every FSM step); the speaker
	// logs session changes itself.
	lvl := &slog.LevelVar{}
	lvl.Set(slog.LevelWarn)
	s.srv = server.NewBgpServer(server.LoggerOption(s.log.With("component", "gobgp"), lvl))
	go s.srv.Serve()
	g := &api.Global{Asn: s.cfg.ASN, RouterId: s.cfg.RouterID, ListenPort: s.cfg.ListenPort}
	if err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: g}); err != nil {
		return fmt.Errorf("bgp: start speaker (AS %d, router id %s, port %d): %w", s.cfg.ASN, s.cfg.RouterID, s.cfg.ListenPort, err)
	}
	if err := s.srv.WatchEvent(context.WithoutCancel(ctx), server.WatchEventMessageCallbacks{OnPeerUpdate: s.peerEvent}, server.WatchPeer()); err != nil {
		s.stop(context.WithoutCancel(ctx), false)
		return fmt.Errorf("bgp: watch sessions: %w", err)
	}
	for _, p := range s.cfg.Peers {
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.apiPeer(p)}); err != nil {
			s.stop(context.WithoutCancel(ctx), false)
			return fmt.Errorf("bgp: add peer %s (AS %d): %w", p.Address, p.ASN, err)
		}
	}
	s.log.Info("bgp speaker started", "asn", s.cfg.ASN, "router_id", s.cfg.RouterID, "listen_port", s.cfg.ListenPort, "peers", len(s.cfg.Peers))
	return nil
}

func (s *Speaker) apiPeer(p PeerConfig) *api.Peer {
	fam := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if netip.MustParseAddr(p.Address).Is6() {
		fam = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
	}
	hold := uint64(p.HoldTime / time.Second)
	ap := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address, PeerAsn: p.ASN, AuthPassword: p.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          hold,
			KeepaliveInterval: max(hold/3, 1),
			ConnectRetry:      uint64(p.ConnectRetry / time.Second),
			// Re-dial one connect-retry after a reset, not GoBGP's 30s.
			IdleHoldTimeAfterReset: uint64(p.ConnectRetry / time.Second),
		}},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
		AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: fam, Enabled: true}}},
	}
	if gr := s.cfg.GracefulRestart; gr > 0 {
		ap.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(gr / time.Second)}
		ap.AfiSafis[0].MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
	}
	return ap
}

func (s *Speaker) peerEvent(ev *apiutil.WatchEventMessage_PeerEvent, at time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	a := ev.Peer.State.NeighborAddress
	if !a.IsValid() {
		a = ev.Peer.Conf.NeighborAddress
	}
	state := fsmState(ev.Peer.State.SessionState)
	s.mu.Lock()
	p, ok := s.peers[a.Unmap()]
	if !ok || p.State == state {
		s.mu.Unlock()
		return
	}
	old := p.State
	p.State, p.Since = state, at
	cp := *p
	on := s.onState
	s.mu.Unlock()
	if state == "established" || old == "established" {
		s.log.Info("bgp session "+state, "peer", cp.Address, "peer_asn", cp.ASN, "was", old,
			"reason", ev.Peer.State.DisconnectReason.String(), "message", ev.Peer.State.DisconnectMessage)
	} else {
		s.log.Debug("bgp session "+state, "peer", cp.Address, "was", old)
	}
	if on != nil {
		on(cp)
	}
}

func fsmState(st bgp.FSMState) string {
	switch st {
	case bgp.BGP_FSM_IDLE:
		return "idle"
	case bgp.BGP_FSM_CONNECT:
		return "connect"
	case bgp.BGP_FSM_ACTIVE:
		return "active"
	case bgp.BGP_FSM_OPENSENT:
		return "opensent"
	case bgp.BGP_FSM_OPENCONFIRM:
		return "openconfirm"
	case bgp.BGP_FSM_ESTABLISHED:
		return "established"
	}
	return strings.ToLower(st.String())
}

// SessionStates are the values PeerStatus.State takes.
var SessionStates = []string{"idle", "connect", "active", "opensent", "openconfirm", "established"}

// Peers returns every configured session's state, by address.
func (s *Speaker) Peers() []PeerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PeerStatus, 0, len(s.peers))
	for _, p := range s.peers {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return strings.Compare(a.Address, b.Address) })
	return out
}

// path is the route the speaker originates for p: origin IGP, next hop
// unspecified (GoBGP puts the session's local address there: next hop
// self), the configured communities.
func (s *Speaker) path(p netip.Prefix) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(p)
	if err != nil {
		return nil, fmt.Errorf("bgp: prefix %s: %w", p, err)
	}
	attrs := []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
		bgp.NewPathAttributeAsPath(nil),
	}
	fam := bgp.RF_IPv4_UC
	if p.Addr().Is4() {
		nh, err := bgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, nh)
	} else {
		fam = bgp.RF_IPv6_UC
		mp, err := bgp.NewPathAttributeMpReachNLRI(fam, []bgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
		if err != nil {
			return nil, fmt.Errorf("bgp: prefix %s: %w", p, err)
		}
		attrs = append(attrs, mp)
	}
	if len(s.communities) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(s.communities))
	}
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs}, nil
}

// Announce originates p (a /32 or /128) to the peers of its family. It is
// idempotent.
func (s *Speaker) Announce(p netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.routes[p]; ok {
		return nil
	}
	path, err := s.path(p)
	if err != nil {
		return err
	}
	res, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{path}})
	if err != nil {
		return fmt.Errorf("bgp: announce %s: %w", p, err)
	}
	s.routes[p] = res[0].UUID
	return nil
}

// Withdraw stops originating p. It is idempotent.
func (s *Speaker) Withdraw(p netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.routes[p]
	if !ok {
		return nil
	}
	if err := s.srv.DeletePath(apiutil.DeletePathRequest{UUIDs: []uuid.UUID{id}}); err != nil {
		return fmt.Errorf("bgp: withdraw %s: %w", p, err)
	}
	delete(s.routes, p)
	return nil
}

// Stop ends every session and the server. With graceful, sessions to peers
// that negotiated graceful restart are closed without a NOTIFICATION, so
// those routers keep the routes for the restart time (the data plane must
// then still forward: keep-on-exit).
func (s *Speaker) Stop(ctx context.Context, graceful bool) error {
	return s.stop(ctx, graceful)
}

func (s *Speaker) stop(ctx context.Context, graceful bool) error {
	if s.srv == nil {
		return nil
	}
	if err := s.srv.StopBgp(ctx, &api.StopBgpRequest{AllowGracefulRestart: graceful}); err != nil {
		return fmt.Errorf("bgp: stop speaker: %w", err)
	}
	s.log.Info("bgp speaker stopped", "graceful_restart", graceful)
	return nil
}
