package enrp

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/rspxdp/rspxdp/selector"
)

// Defaults, as rsplib's registrar uses them (rspregistrar.h).
const (
	DefaultKeepAliveInterval     = 5 * time.Second
	DefaultKeepAliveTimeout      = 5 * time.Second
	DefaultPeerHeartbeatCycle    = 2444 * time.Millisecond
	DefaultPeerMaxTimeLastHeard  = 5 * time.Second
	DefaultPeerMaxTimeNoResponse = 5 * time.Second
	DefaultTakeoverExpiry        = 5 * time.Second
	DefaultMentorDiscovery       = 5 * time.Second
	DefaultAnnounceInterval      = 1 * time.Second
	DefaultMaxResolutionItems    = 3
	DefaultMaxPEsPerResponse     = 128
	DefaultMaxBadPEReports       = 3
	DefaultMaxIncrement          = 0
	DefaultMaxPEs                = 1 << 20
	// DefaultMaxPeers bounds the peer table: an operation scope has a
	// handful of registrars, not thousands.
	DefaultMaxPeers = 64
	// MaxHandleLen bounds a pool handle (RFC 5351 leaves it open; rsplib
	// uses 32 bytes, we allow more but not without limit).
	MaxHandleLen = 255
)

// Config is the registrar's configuration. The zero value of every duration
// or count selects its default.
type Config struct {
	// ID is this registrar's non-zero ENRP server identifier.
	ID uint32
	// ASAP and ENRP are the addresses announced in Presence and Server Announce.
	ASAP, ENRP netip.AddrPort
	// Transport is what ASAP and ENRP run over (selector.SCTP or
	// selector.TCP; 0: TCP): the kind of the transport parameters that
	// carry ASAP and ENRP above, and of PEs' ASAP addresses filled in from
	// their associations. Server sets it from its transport.
	Transport selector.Protocol

	// KeepAliveInterval is how often the home registrar sends Endpoint
	// Keep-Alive to each PE it owns; KeepAliveTimeout how long it waits for
	// the ack before removing the PE.
	KeepAliveInterval, KeepAliveTimeout time.Duration
	// PeerHeartbeatCycle is the period of unsolicited Presence to all peers.
	PeerHeartbeatCycle time.Duration
	// PeerMaxTimeLastHeard: a peer silent this long is asked for a Presence.
	PeerMaxTimeLastHeard time.Duration
	// PeerMaxTimeNoResponse: a peer that does not answer that request within
	// this time is dead and gets taken over.
	PeerMaxTimeNoResponse time.Duration
	// TakeoverExpiry bounds the wait for Init Takeover Acks; past it the
	// takeover completes with the acks received.
	TakeoverExpiry time.Duration
	// AnnounceInterval is the Server Announce period (when announcing).
	AnnounceInterval time.Duration

	// MaxResolutionItems is the number of PEs a Handle Resolution returns
	// when the PU does not ask for a number.
	MaxResolutionItems int
	// MaxIncrement is how far round-robin state advances per resolution
	// (0: by the number of PEs returned, as rsplib).
	MaxIncrement int
	// MaxPEsPerResponse bounds the PEs in one Handle Table Response; more
	// follow with the more-to-send flag.
	MaxPEsPerResponse int
	// MaxBadPEReports: an owned PE reported unreachable more often than this
	// is removed.
	MaxBadPEReports int
	// MaxPEs bounds the handlespace; registrations beyond it are refused
	// with Lack of Resources.
	MaxPEs int
	// MaxPools bounds the number of pools and MaxPEsPerPool the PEs of one
	// pool (0: unbounded); registrations past them are refused with Lack
	// of Resources, so one client cannot fill the handlespace.
	MaxPools, MaxPEsPerPool int

	// MaxPeers bounds the registrars this one peers with (0:
	// DefaultMaxPeers); Presences from more are ignored.
	MaxPeers int

	// Allow authorises registrations; nil allows everything.
	Allow *AllowList
	// Logger receives joins, leaves, takeovers and rejections; nil: slog.Default().
	Logger *slog.Logger
	// DrainTimeout is how long a deregistered PE stays in its pool's
	// steering set with weight 0, so the data plane keeps its existing
	// flows (0: the selector's default, 30 s; negative: none).
	DrainTimeout time.Duration
	// Seed seeds the randomized selection policies (tests).
	Seed uint64
}

func (c Config) withDefaults() (Config, error) {
	if c.ID == 0 {
		return c, fmt.Errorf("registrar config: server id must be non-zero")
	}
	d := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	d(&c.KeepAliveInterval, DefaultKeepAliveInterval)
	d(&c.KeepAliveTimeout, DefaultKeepAliveTimeout)
	d(&c.PeerHeartbeatCycle, DefaultPeerHeartbeatCycle)
	d(&c.PeerMaxTimeLastHeard, DefaultPeerMaxTimeLastHeard)
	d(&c.PeerMaxTimeNoResponse, DefaultPeerMaxTimeNoResponse)
	d(&c.TakeoverExpiry, DefaultTakeoverExpiry)
	d(&c.AnnounceInterval, DefaultAnnounceInterval)
	n := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	n(&c.MaxResolutionItems, DefaultMaxResolutionItems)
	n(&c.MaxPEsPerResponse, DefaultMaxPEsPerResponse)
	n(&c.MaxBadPEReports, DefaultMaxBadPEReports)
	n(&c.MaxPEs, DefaultMaxPEs)
	n(&c.MaxPeers, DefaultMaxPeers)
	if c.MaxIncrement < 0 {
		c.MaxIncrement = 0
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// AllowList authorises registrations by pool handle and source network
// until certificate identities (the security issue) replace it.
type AllowList struct {
	// Handles allowed; empty allows any handle.
	Handles []string
	// Networks allowed to register; empty allows any source.
	Networks []netip.Prefix
}

// Allowed reports whether src may register under handle.
func (a *AllowList) Allowed(handle string, src netip.Addr) bool {
	if a == nil {
		return true
	}
	okH := len(a.Handles) == 0
	for _, h := range a.Handles {
		if h == handle {
			okH = true
			break
		}
	}
	if !okH {
		return false
	}
	if len(a.Networks) == 0 {
		return true
	}
	src = src.Unmap()
	for _, p := range a.Networks {
		if p.Contains(src) {
			return true
		}
	}
	return false
}
