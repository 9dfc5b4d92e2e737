package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Config is the node's BGP speaker: its own identity, the routers it peers
// with, and how announcement follows health. The zero value (no peers) is
// "BGP off". It is the `bgp:` section of rspxdp.yaml.
type Config struct {
	// ASN is the node's autonomous system number.
	ASN uint32 `yaml:"asn"`
	// RouterID is the node's BGP identifier, an IPv4 address unique among
	// the routers' peers.
	RouterID string `yaml:"router-id"`
	// ListenPort is where the speaker accepts sessions the routers open
	// (179); -1 does not listen and only dials out.
	ListenPort int32 `yaml:"listen-port"`
	// Peers are the upstream routers.
	Peers []PeerConfig `yaml:"peers"`
	// MinPEs is how many active PEs a VIP's pool needs before the VIP is
	// announced (default 1).
	MinPEs int `yaml:"min-pes"`
	// Settle is how long a VIP must be healthy without a break before it
	// is announced (default 1s): a node that just started is still
	// learning the PE set from its ENRP peers.
	Settle time.Duration `yaml:"settle"`
	// Drain is how long a stopping node keeps forwarding after it has
	// withdrawn its VIPs, while the routers move flows to other nodes.
	Drain time.Duration `yaml:"drain"`
	// Communities are attached to every announced VIP: "ASN:VALUE" or
	// no-export, no-advertise, no-export-subconfed, blackhole.
	Communities []string `yaml:"communities"`
	// GracefulRestart, when its restart time is non-zero, offers the
	// graceful restart capability (RFC 4724): a node stopping with
	// keep-on-exit closes its sessions without a NOTIFICATION, and a
	// router that supports it keeps the routes (stale) that long while
	// the node restarts and the data plane keeps forwarding.
	GracefulRestart time.Duration `yaml:"graceful-restart"`
}

// PeerConfig is one upstream router.
type PeerConfig struct {
	// Address is the router's IP address.
	Address string `yaml:"address"`
	// ASN is the router's autonomous system number.
	ASN uint32 `yaml:"asn"`
	// Port is the router's BGP port (179).
	Port uint16 `yaml:"port"`
	// Password enables TCP-MD5 signatures (RFC 2385) on the session.
	Password string `yaml:"password"`
	// HoldTime is the BGP hold time offered (default 90s; 0 or at
	// least 3s); the keep-alive interval is a third of it. A router
	// drops a dead node's routes after this long.
	HoldTime time.Duration `yaml:"hold-time"`
	// ConnectRetry is how long the speaker waits before dialling the
	// router again after a failed attempt (default 5s).
	ConnectRetry time.Duration `yaml:"connect-retry"`
}

// Defaults for fields left zero.
const (
	DefaultPort     = 179
	DefaultHoldTime = 90 * time.Second
	DefaultDrain    = 5 * time.Second
	DefaultSettle   = time.Second
	// DefaultConnectRetry is far below GoBGP's own 120s: a node that
	// starts before its router must not wait two minutes to announce.
	DefaultConnectRetry = 5 * time.Second
)

// Enabled reports whether any BGP is configured.
func (c *Config) Enabled() bool { return c.ASN != 0 || c.RouterID != "" || len(c.Peers) > 0 }

// WithDefaults returns c with its zero fields at their defaults.
func (c Config) WithDefaults() Config {
	if c.ListenPort == 0 {
		c.ListenPort = DefaultPort
	}
	if c.MinPEs == 0 {
		c.MinPEs = 1
	}
	if c.Drain == 0 {
		c.Drain = DefaultDrain
	}
	if c.Settle == 0 {
		c.Settle = DefaultSettle
	}
	peers := make([]PeerConfig, len(c.Peers))
	for i, p := range c.Peers {
		if p.Port == 0 {
			p.Port = DefaultPort
		}
		if p.HoldTime == 0 {
			p.HoldTime = DefaultHoldTime
		}
		if p.ConnectRetry == 0 {
			p.ConnectRetry = DefaultConnectRetry
		}
		peers[i] = p
	}
	c.Peers = peers
	return c
}

// Validate checks every field and names the first that is wrong as the
// YAML file spells it ("bgp.peers[1].hold-time"). A disabled configuration
// is valid.
func (c *Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	if c.ASN == 0 {
		return errors.New("bgp.asn: required when BGP is configured (the node's AS number)")
	}
	if c.RouterID == "" {
		return errors.New("bgp.router-id: required when BGP is configured (an IPv4 address unique among the routers' peers)")
	}
	if a, err := netip.ParseAddr(c.RouterID); err != nil || !a.Is4() {
		return fmt.Errorf("bgp.router-id: %q is not an IPv4 address", c.RouterID)
	}
	if c.ListenPort < -1 {
		return fmt.Errorf("bgp.listen-port: %d: want a port, or -1 not to listen", c.ListenPort)
	}
	if len(c.Peers) == 0 {
		return errors.New("bgp.peers: none given; name the routers to announce the VIPs to")
	}
	seen := map[netip.Addr]int{}
	for i, p := range c.Peers {
		a, err := netip.ParseAddr(p.Address)
		if err != nil {
			return fmt.Errorf("bgp.peers[%d].address: %q is not an IP address", i, p.Address)
		}
		if j, dup := seen[a]; dup {
			return fmt.Errorf("bgp.peers[%d].address: %s is also bgp.peers[%d]", i, a, j)
		}
		seen[a] = i
		if p.ASN == 0 {
			return fmt.Errorf("bgp.peers[%d].asn: required (the router's AS number)", i)
		}
		if p.HoldTime < 0 || (p.HoldTime > 0 && p.HoldTime < 3*time.Second) || p.HoldTime > 65535*time.Second {
			return fmt.Errorf("bgp.peers[%d].hold-time: %s: BGP allows 3s to 65535s (RFC 4271)", i, p.HoldTime)
		}
		if p.HoldTime%time.Second != 0 {
			return fmt.Errorf("bgp.peers[%d].hold-time: %s: BGP counts whole seconds", i, p.HoldTime)
		}
		if p.ConnectRetry < 0 || (p.ConnectRetry > 0 && p.ConnectRetry < time.Second) || p.ConnectRetry%time.Second != 0 {
			return fmt.Errorf("bgp.peers[%d].connect-retry: %s: want whole seconds, at least 1s", i, p.ConnectRetry)
		}
		if len(p.Password) > 80 {
			return fmt.Errorf("bgp.peers[%d].password: longer than the 80 bytes TCP-MD5 allows", i)
		}
	}
	if c.MinPEs < 0 {
		return fmt.Errorf("bgp.min-pes: %d is negative", c.MinPEs)
	}
	if c.Drain < 0 {
		return fmt.Errorf("bgp.drain: %s is negative", c.Drain)
	}
	if c.Settle < 0 {
		return fmt.Errorf("bgp.settle: %s is negative", c.Settle)
	}
	if c.GracefulRestart < 0 || c.GracefulRestart > 4095*time.Second {
		return fmt.Errorf("bgp.graceful-restart: %s: the restart time is 0 to 4095s (RFC 4724)", c.GracefulRestart)
	}
	for i, s := range c.Communities {
		if _, err := ParseCommunity(s); err != nil {
			return fmt.Errorf("bgp.communities[%d]: %w", i, err)
		}
	}
	return nil
}

// wellKnown are the RFC 1997 and RFC 7999 communities by name.
var wellKnown = map[string]uint32{
	"no-export":           0xFFFFFF01,
	"no-advertise":        0xFFFFFF02,
	"no-export-subconfed": 0xFFFFFF03,
	"blackhole":           0xFFFF029A,
}

// ParseCommunity reads a standard community: "ASN:VALUE" (each 0-65535)
// or a well-known name.
func ParseCommunity(s string) (uint32, error) {
	if v, ok := wellKnown[strings.ToLower(s)]; ok {
		return v, nil
	}
	hi, lo, ok := strings.Cut(s, ":")
	a, err1 := strconv.ParseUint(hi, 10, 16)
	b, err2 := strconv.ParseUint(lo, 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%q is not a community like 65000:100 or no-export", s)
	}
	return uint32(a)<<16 | uint32(b), nil
}

// ParsePeer reads the --bgp-peer flag form ADDR,asn=N[,hold-time=D]
// [,password=S][,port=N][,connect-retry=D], e.g.
// "10.0.0.1,asn=65000,hold-time=9s". The result is checked by Validate.
func ParsePeer(s string) (PeerConfig, error) {
	parts := strings.Split(s, ",")
	p := PeerConfig{Address: parts[0]}
	for _, kv := range parts[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return p, fmt.Errorf("bgp peer %q: %q is not KEY=VALUE", s, kv)
		}
		var err error
		switch k {
		case "asn":
			var n uint64
			n, err = strconv.ParseUint(v, 10, 32)
			p.ASN = uint32(n)
		case "port":
			var n uint64
			n, err = strconv.ParseUint(v, 10, 16)
			p.Port = uint16(n)
		case "password":
			p.Password = v
		case "hold-time":
			p.HoldTime, err = time.ParseDuration(v)
		case "connect-retry":
			p.ConnectRetry, err = time.ParseDuration(v)
		default:
			return p, fmt.Errorf("bgp peer %q: unknown key %q (asn, hold-time, password, port, connect-retry)", s, k)
		}
		if err != nil {
			return p, fmt.Errorf("bgp peer %q: %s: %w", s, k, err)
		}
	}
	if p.ASN == 0 {
		return p, fmt.Errorf("bgp peer %q: want ADDR,asn=N[,hold-time=D][,password=S][,port=N]", s)
	}
	return p, nil
}
