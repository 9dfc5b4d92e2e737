package asap

import (
	"log/slog"
	"time"

	"github.com/rspxdp/rspxdp/selector/policy"
	"github.com/rspxdp/rspxdp/transport"
)

// Defaults, as rsplib's pool element and pool user use them.
const (
	// DefaultReregistrationInterval is how often a PE re-registers.
	DefaultReregistrationInterval = 30 * time.Second
	// DefaultResponseTimeout bounds the wait for a registrar's answer.
	DefaultResponseTimeout = 2 * time.Second
	// DefaultCacheStaleness is how long a PU trusts a resolution.
	DefaultCacheStaleness = time.Second
	// DefaultDialTimeout bounds one connection attempt.
	DefaultDialTimeout = 2 * time.Second
)

// Option configures Register and Dial.
type Option func(*config)

type config struct {
	registrars   []string
	announces    string
	policy       policy.Settings
	interval     time.Duration
	lifetime     time.Duration
	respTimeout  time.Duration
	dialTimeout  time.Duration
	staleness    time.Duration
	asapListen   string
	peID         uint32
	log          *slog.Logger
	transport    transport.Transport
	maxFailovers int
	unaware      bool
}

func newConfig(opts []Option) config {
	c := config{
		policy:       policy.RoundRobin(),
		interval:     DefaultReregistrationInterval,
		respTimeout:  DefaultResponseTimeout,
		dialTimeout:  DefaultDialTimeout,
		staleness:    DefaultCacheStaleness,
		maxFailovers: 8,
	}
	for _, o := range opts {
		o(&c)
	}
	if c.lifetime <= 0 {
		c.lifetime = 3 * c.interval
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	return c
}

// WithRegistrars sets the static list of registrars' ASAP addresses
// ("host:port"), tried in order.
func WithRegistrars(addrs ...string) Option {
	return func(c *config) { c.registrars = append(c.registrars, addrs...) }
}

// WithAnnounces listens for ASAP Server Announces on the UDP address addr
// (e.g. ":3863") and adds every registrar heard to the list.
func WithAnnounces(addr string) Option { return func(c *config) { c.announces = addr } }

// WithPolicy sets the PE's pool policy and its values.
func WithPolicy(p policy.Settings) Option { return func(c *config) { c.policy = p } }

// WithReregistrationInterval sets how often the PE re-registers; the
// registration lifetime is three times that unless WithLifetime says.
func WithReregistrationInterval(d time.Duration) Option {
	return func(c *config) { c.interval = d }
}

// WithLifetime sets the registration lifetime the PE asks for.
func WithLifetime(d time.Duration) Option { return func(c *config) { c.lifetime = d } }

// WithResponseTimeout bounds the wait for a registrar's response; a
// registrar that does not answer in time is abandoned for another.
func WithResponseTimeout(d time.Duration) Option { return func(c *config) { c.respTimeout = d } }

// WithDialTimeout bounds each connection attempt (registrars and PEs).
func WithDialTimeout(d time.Duration) Option { return func(c *config) { c.dialTimeout = d } }

// WithCacheStaleness sets how long a pool user reuses a handle resolution
// before asking a registrar again (0 asks every time).
func WithCacheStaleness(d time.Duration) Option { return func(c *config) { c.staleness = d } }

// WithASAPListen sets where the PE listens for registrars' Endpoint
// Keep-Alives after a takeover (default: the user listener's host, any port).
func WithASAPListen(addr string) Option { return func(c *config) { c.asapListen = addr } }

// WithPEID fixes the PE identifier (default: random).
func WithPEID(id uint32) Option { return func(c *config) { c.peID = id } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithTransport sets the ASAP transport to registrars (default plain TCP).
func WithTransport(t transport.Transport) Option { return func(c *config) { c.transport = t } }

// WithMaxFailovers bounds how many PEs a Conn tries in a row before it
// gives up (default 8).
func WithMaxFailovers(n int) Option { return func(c *config) { c.maxFailovers = n } }

func (c *config) asapTransport() (transport.Transport, error) {
	if c.transport != nil {
		return c.transport, nil
	}
	return transport.NewTCP(transport.Config{Protocol: transport.ASAP, Logger: c.log})
}

// WithUnawareUsers makes a PE's sessions carry plain bytes, without the
// session layer's framing: for users that do not speak RSerPool, such as
// clients whose flows rspxdp's XDP data plane steers from a VIP to this PE.
// Cookies and business cards are then unavailable (ErrUnawareSession).
func WithUnawareUsers() Option { return func(c *config) { c.unaware = true } }
