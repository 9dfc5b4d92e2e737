package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rspxdp/rspxdp/bgp"
	"github.com/rspxdp/rspxdp/enrp"
	"github.com/rspxdp/rspxdp/loader"
)

// Config is a node's whole configuration: the registrar it runs, the data
// plane it programs, and the virtual services that join the two. It is what
// rspxdp.yaml holds (see rspxdp.example.yaml); flags override it.
type Config struct {
	Registrar RegistrarConfig `yaml:"registrar"`
	Dataplane DataplaneConfig `yaml:"dataplane"`
	// VIPs are the virtual services: flows to VIP go to the PEs of Handle.
	VIPs []VIP `yaml:"vips"`
	// Metrics is the Prometheus listen address ("" disables it).
	Metrics string `yaml:"metrics"`
	// ReconcileEvery is the period of the drift check that compares the
	// maps with the handlespace and repairs them.
	ReconcileEvery Duration `yaml:"reconcile-every"`
	// BGP announces the VIPs to upstream routers (off without peers).
	BGP bgp.Config `yaml:"bgp"`
	// LogLevel is debug, info, warn or error ("": info, or the flag's);
	// a reload (SIGHUP) applies a changed one.
	LogLevel string `yaml:"log-level"`
	// LogFormat is text (key=value, the default) or json (one object per
	// line), as --log-format; it is read at start only.
	LogFormat string `yaml:"log-format"`
}

// RegistrarConfig configures the embedded registrar.
type RegistrarConfig struct {
	// ID is the ENRP server id; 0 picks a random non-zero one.
	ID uint32 `yaml:"id"`
	// ASAP and ENRP are listen addresses (":3863", ":9901").
	ASAP string `yaml:"asap"`
	ENRP string `yaml:"enrp"`
	// AdvertiseASAP and AdvertiseENRP are the IP:PORT announced to PEs,
	// PUs and peers when the listen address is unspecified (":3863").
	AdvertiseASAP string `yaml:"advertise-asap"`
	AdvertiseENRP string `yaml:"advertise-enrp"`
	// Peers are static ENRP peers, host:port.
	Peers []string `yaml:"peers"`
	// Transport is tcp or sctp.
	Transport string `yaml:"transport"`
	// Announce sends ASAP Server Announces to the multicast group.
	Announce bool   `yaml:"announce"`
	Timers   Timers `yaml:"timers"`
	// AllowHandles and AllowNetworks restrict who may register what
	// (empty: anything, from anywhere).
	AllowHandles  []string `yaml:"allow-handles"`
	AllowNetworks []string `yaml:"allow-networks"`
	// TLS, when its files are given, runs ASAP and ENRP over TLS 1.3 with
	// mutual authentication and authorises by a policy file (RFC 5355).
	TLS TLSConfig `yaml:"tls"`
	// MaxPools, MaxPEsPerPool and MaxConnections bound the handlespace
	// and the associations per listener (0: the registrar's defaults).
	MaxPools       int `yaml:"max-pools"`
	MaxPEsPerPool  int `yaml:"max-pes-per-pool"`
	MaxConnections int `yaml:"max-connections"`
	// MaxConnectionsPerSource bounds the associations of one source
	// address (IPv6: /64) per listener (0: the registrar's default, 512).
	MaxConnectionsPerSource int `yaml:"max-connections-per-source"`
	// MaxPEs bounds the PEs of the whole handlespace (0: 1048576).
	MaxPEs int `yaml:"max-pes"`
	// MaxResolutionItems is the PEs per handle resolution when the PU does
	// not say (0: 3); MaxIncrement the selection state advance per
	// resolution (0: the policy's default); MaxPEsPerResponse the PEs per
	// ENRP Handle Table Response (0: 128); MaxBadPEReports the Endpoint
	// Unreachable reports that remove a PE (0: 3; with TLS, distinct
	// reporters).
	MaxResolutionItems int `yaml:"max-resolution-items"`
	MaxIncrement       int `yaml:"max-increment"`
	MaxPEsPerResponse  int `yaml:"max-pes-per-response"`
	MaxBadPEReports    int `yaml:"max-bad-pe-reports"`
	// PeerAnnounce finds peers by ENRP Presence announces over UDP
	// multicast (239.0.0.51:9901).
	PeerAnnounce bool `yaml:"peer-announce"`
	// AnnounceTo are unicast IP:PORT that also get the ASAP Server
	// Announces (implies announcing).
	AnnounceTo []string `yaml:"announce-to"`
	// ListenOnClientSide allows ASAP or ENRP to listen on an address of a
	// client-facing interface (dataplane.interfaces). Without it such a
	// listen address is refused: the registrar belongs on the control
	// side. The data plane's control-port filter applies either way.
	ListenOnClientSide bool `yaml:"listen-on-client-side"`
}

// TLSConfig is the registrar's key material and authorisation policy, as
// the registrar's --tls-ca, --tls-cert, --tls-key and --policy flags.
// SIGHUP re-reads them all.
type TLSConfig struct {
	CA     string `yaml:"ca"`
	Cert   string `yaml:"cert"`
	Key    string `yaml:"key"`
	Policy string `yaml:"policy"`
	// MaxResolutionRate and MaxUnreachableRate limit handle resolutions
	// and Endpoint Unreachable reports per client and second (0: none).
	MaxResolutionRate  float64 `yaml:"max-resolution-rate"`
	MaxUnreachableRate float64 `yaml:"max-unreachable-rate"`
}

// Enabled reports whether any TLS file is named.
func (t TLSConfig) Enabled() bool { return t.CA != "" || t.Cert != "" || t.Key != "" }

// Timers are the registrar's timers; zero means the registrar's default.
type Timers struct {
	KeepAliveInterval     Duration `yaml:"keepalive-interval"`
	KeepAliveTimeout      Duration `yaml:"keepalive-timeout"`
	PeerHeartbeatCycle    Duration `yaml:"peer-heartbeat-cycle"`
	PeerMaxTimeLastHeard  Duration `yaml:"peer-max-time-last-heard"`
	PeerMaxTimeNoResponse Duration `yaml:"peer-max-time-no-response"`
	TakeoverExpiry        Duration `yaml:"takeover-expiry"`
	// DrainTimeout is how long a deregistered PE keeps its existing flows
	// (0s: not at all).
	DrainTimeout Duration `yaml:"drain-timeout"`
	// LeaveTimeout is how long a stopping registrar waits for a peer to
	// take its PEs over (0s: it leaves without telling the peers).
	LeaveTimeout Duration `yaml:"leave-timeout"`
	// AnnounceInterval is the ASAP Server Announce period.
	AnnounceInterval Duration `yaml:"announce-interval"`
	// IdleTimeout closes a client connection that carries no PE and no
	// peer after this long without a message (0s: never).
	IdleTimeout Duration `yaml:"idle-timeout"`
	// DialTimeout bounds connecting to a peer or, after a takeover, a PE.
	DialTimeout Duration `yaml:"dial-timeout"`
}

// DataplaneConfig configures the XDP data plane.
type DataplaneConfig struct {
	// Interfaces to attach the XDP program to.
	Interfaces []string `yaml:"interfaces"`
	// Mode is auto (native, falling back to generic), native or generic.
	Mode string `yaml:"mode"`
	// Forwarding is ipip (IPIP / IPv6-in-IPv6 encapsulation, direct server
	// return) or l2dsr (rewrite the destination MAC only).
	Forwarding string `yaml:"forwarding"`
	// PinDir is the bpffs directory of the pinned maps and links.
	PinDir string `yaml:"pin-dir"`
	// TableSize is the Maglev ring size, a prime.
	TableSize uint32 `yaml:"table-size"`
	// Seed is the flow hash seed: the same on every node of a pool.
	Seed uint32 `yaml:"seed"`
	// ConnTableSize is the connection table capacity.
	ConnTableSize uint32 `yaml:"conn-table-size"`
	// FloodLimit is new flows per second and CPU past which new flows get
	// no connection entry (default loader.DefaultFloodLimit; 0: off).
	FloodLimit uint32 `yaml:"flood-limit"`
	// SourceV4 and SourceV6 are the outer source addresses of encapsulated
	// packets.
	SourceV4 string `yaml:"source-v4"`
	SourceV6 string `yaml:"source-v6"`
	// Redirect forwards with XDP_REDIRECT to the PE's route interface
	// instead of XDP_TX out of the receiving one.
	Redirect bool `yaml:"redirect"`
	// KeepOnExit leaves the program attached and the maps pinned when the
	// node stops, so established flows keep flowing across a restart.
	KeepOnExit bool `yaml:"keep-on-exit"`
	// ControlNetworks are the source prefixes that may reach the node's
	// control ports (the registrar's ASAP and ENRP ports and the metrics
	// port) through the client-facing interfaces. The XDP program drops
	// every other packet to those ports arriving there, so no client can
	// register, resolve or speak ENRP. Empty: no one.
	ControlNetworks []string `yaml:"control-networks"`
}

// VIP is one virtual service: flows to Addr/Proto are steered to the PEs
// registered under Handle.
type VIP struct {
	Handle string `yaml:"handle"`
	// Address is ADDR:PORT ("10.200.1.1:80", "[fc00:1::1]:80").
	Address string `yaml:"address"`
	// Protocol is tcp, udp or sctp.
	Protocol string `yaml:"protocol"`

	key loader.ServiceKey
}

// Key returns the data-plane service key of a validated VIP.
func (v VIP) Key() loader.ServiceKey { return v.key }

// String gives the --vip flag form, HANDLE=ADDR:PORT/PROTO.
func (v VIP) String() string { return v.Handle + "=" + v.Address + "/" + v.Protocol }

// ParseVIP parses the --vip flag form HANDLE=ADDR:PORT/PROTO (PROTO defaults
// to tcp).
func ParseVIP(s string) (VIP, error) {
	handle, rest, ok := strings.Cut(s, "=")
	if !ok || handle == "" {
		return VIP{}, fmt.Errorf("vip %q: want HANDLE=ADDR:PORT/PROTO", s)
	}
	addr, proto, ok := strings.Cut(rest, "/")
	if !ok {
		proto = "tcp"
	}
	v := VIP{Handle: handle, Address: addr, Protocol: proto}
	if err := v.validate(); err != nil {
		return VIP{}, fmt.Errorf("vip %q: %w", s, err)
	}
	return v, nil
}

func (v *VIP) validate() error {
	if err := CheckHandle(v.Handle); err != nil {
		return fmt.Errorf("handle: %w", err)
	}
	ap, err := netip.ParseAddrPort(v.Address)
	if err != nil {
		return fmt.Errorf("address: %q is not ADDR:PORT (IPv6 in brackets)", v.Address)
	}
	if ap.Port() == 0 {
		return fmt.Errorf("address: %q has port 0", v.Address)
	}
	var p loader.Proto
	switch strings.ToLower(v.Protocol) {
	case "tcp", "":
		p, v.Protocol = loader.TCP, "tcp"
	case "udp":
		p = loader.UDP
	case "sctp":
		p = loader.SCTP
	default:
		return fmt.Errorf("protocol: %q is not tcp, udp or sctp", v.Protocol)
	}
	v.key = loader.ServiceKey{VIP: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), Proto: p}
	return nil
}

// Duration is a time.Duration written as "5s" or "100ms" in YAML.
type Duration time.Duration

// UnmarshalYAML accepts Go duration strings.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: not a duration like 5s or 100ms", n.Line)
	}
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 5s or 100ms", n.Line, s)
	}
	if v < 0 {
		return fmt.Errorf("line %d: %q is a negative duration", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the form UnmarshalYAML reads back.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Defaults returns the configuration a node runs with when nothing is set.
func Defaults() Config {
	return Config{
		Registrar: RegistrarConfig{ASAP: ":3863", ENRP: ":9901", Transport: "tcp",
			Timers: Timers{
				KeepAliveInterval:     Duration(enrp.DefaultKeepAliveInterval),
				KeepAliveTimeout:      Duration(enrp.DefaultKeepAliveTimeout),
				PeerHeartbeatCycle:    Duration(enrp.DefaultPeerHeartbeatCycle),
				PeerMaxTimeLastHeard:  Duration(enrp.DefaultPeerMaxTimeLastHeard),
				PeerMaxTimeNoResponse: Duration(enrp.DefaultPeerMaxTimeNoResponse),
				TakeoverExpiry:        Duration(enrp.DefaultTakeoverExpiry),
				DrainTimeout:          Duration(30 * time.Second),
				LeaveTimeout:          Duration(enrp.DefaultLeaveTimeout),
				AnnounceInterval:      Duration(enrp.DefaultAnnounceInterval),
				DialTimeout:           Duration(2 * time.Second),
				IdleTimeout:           Duration(enrp.DefaultIdleTimeout),
			},
			MaxConnections:          enrp.DefaultMaxConnections,
			MaxConnectionsPerSource: enrp.DefaultMaxConnectionsPerSource,
			// Unbounded, one client could create pools without end.
			MaxPools:           100000,
			MaxPEs:             enrp.DefaultMaxPEs,
			MaxResolutionItems: enrp.DefaultMaxResolutionItems,
			MaxPEsPerResponse:  enrp.DefaultMaxPEsPerResponse,
			MaxBadPEReports:    enrp.DefaultMaxBadPEReports,
		},
		Dataplane: DataplaneConfig{
			Mode:       "auto",
			Forwarding: "ipip",
			PinDir:     loader.DefaultPinDir,
			Seed:       loader.DefaultSeed,
			FloodLimit: loader.DefaultFloodLimit,
		},
		Metrics:        ":9464",
		ReconcileEvery: Duration(10 * time.Second),
	}
}

// LoadFile reads a YAML configuration over the defaults. Unknown fields are
// errors, so a typo does not silently leave a default in place.
func LoadFile(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Defaults(), fmt.Errorf("config: %w", err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig reads a YAML configuration held in memory over the defaults,
// as LoadFile does. It does not validate.
func ParseConfig(b []byte) (cfg Config, err error) {
	cfg = Defaults()
	// The YAML library has panicked on hostile documents before; a bad
	// file must be an error, never a crash of the node.
	defer func() {
		if r := recover(); r != nil {
			cfg, err = Defaults(), fmt.Errorf("malformed YAML: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, explainYAML(err, b)
	}
	return cfg, nil
}

// Validate checks every field and names the first that is wrong, in the
// file's own terms (e.g. "vips[1].address").
func (c *Config) Validate() error {
	if err := c.Registrar.Validate(); err != nil {
		return err
	}
	d := &c.Dataplane
	if len(d.Interfaces) == 0 {
		return errors.New("dataplane.interfaces: none given; name the interfaces clients' traffic arrives on")
	}
	for i, ifc := range d.Interfaces {
		if ifc == "" || len(ifc) > 15 || strings.ContainsAny(ifc, "/ \t") {
			return fmt.Errorf("dataplane.interfaces[%d]: %q is not an interface name", i, ifc)
		}
	}
	if _, err := d.mode(); err != nil {
		return err
	}
	if _, err := parsePrefixes(d.ControlNetworks); err != nil {
		return err
	}
	switch d.Forwarding {
	case "ipip", "l2dsr":
	default:
		return fmt.Errorf("dataplane.forwarding: %q is not ipip or l2dsr", d.Forwarding)
	}
	if d.PinDir == "" {
		return errors.New("dataplane.pin-dir: empty")
	}
	if d.TableSize != 0 && !isPrime(d.TableSize) {
		return fmt.Errorf("dataplane.table-size: %d is not prime (Maglev needs a prime; the default is 65537)", d.TableSize)
	}
	for name, s := range map[string]string{"dataplane.source-v4": d.SourceV4, "dataplane.source-v6": d.SourceV6} {
		if s == "" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || (name == "dataplane.source-v4") != a.Is4() {
			return fmt.Errorf("%s: %q is not an IPv%s address", name, s, map[bool]string{true: "4", false: "6"}[name == "dataplane.source-v4"])
		}
	}
	if len(c.VIPs) == 0 {
		return errors.New("vips: none given; add --vip HANDLE=ADDR:PORT/PROTO")
	}
	seen := map[loader.ServiceKey]int{}
	for i := range c.VIPs {
		if err := c.VIPs[i].validate(); err != nil {
			return fmt.Errorf("vips[%d].%w", i, err)
		}
		if j, dup := seen[c.VIPs[i].key]; dup {
			return fmt.Errorf("vips[%d]: %s/%s is also vips[%d]", i, c.VIPs[i].Address, c.VIPs[i].Protocol, j)
		}
		seen[c.VIPs[i].key] = i
	}
	if c.Metrics != "" {
		if _, _, err := splitHostPort(c.Metrics); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	switch c.LogFormat {
	case "", "text", "json":
	default:
		return fmt.Errorf("log-format: %q is not text or json", c.LogFormat)
	}
	if c.ReconcileEvery.D() < 100*time.Millisecond {
		return fmt.Errorf("reconcile-every: %s is below 100ms", c.ReconcileEvery.D())
	}
	if err := c.BGP.Validate(); err != nil {
		return err
	}
	return nil
}

// Validate checks the registrar's fields, naming the first that is wrong
// as Config.Validate does ("registrar.peers[0]"). The registrar subcommand
// runs it alone.
func (r *RegistrarConfig) Validate() error {
	for i, p := range r.Peers {
		if _, _, err := splitHostPort(p); err != nil {
			return fmt.Errorf("registrar.peers[%d]: %w", i, err)
		}
	}
	for name, a := range map[string]string{"registrar.asap": r.ASAP, "registrar.enrp": r.ENRP} {
		if _, _, err := splitHostPort(a); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	for name, a := range map[string]string{"registrar.advertise-asap": r.AdvertiseASAP, "registrar.advertise-enrp": r.AdvertiseENRP} {
		if _, err := netip.ParseAddrPort(a); a != "" && err != nil {
			return fmt.Errorf("%s: %q is not IP:PORT", name, a)
		}
	}
	switch r.Transport {
	case "tcp", "sctp", "auto":
	default:
		return fmt.Errorf("registrar.transport: %q is not tcp, sctp or auto", r.Transport)
	}
	for i, n := range r.AllowNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			return fmt.Errorf("registrar.allow-networks[%d]: %q is not a prefix like 10.0.0.0/8", i, n)
		}
	}
	switch t := r.TLS; {
	case t.Enabled() && (t.CA == "" || t.Cert == "" || t.Key == ""):
		return errors.New("registrar.tls: ca, cert and key go together: give all three or none")
	case t.Enabled() && t.Policy == "":
		return errors.New("registrar.tls.policy: required with TLS (which identities may register, peer and resolve)")
	case !t.Enabled() && t.Policy != "":
		return errors.New("registrar.tls.policy: needs ca, cert and key: identities come from certificates")
	case t.Enabled() && r.Transport != "tcp":
		return fmt.Errorf("registrar.tls: TLS runs over tcp, not %s", r.Transport)
	case t.MaxResolutionRate < 0 || t.MaxUnreachableRate < 0:
		return errors.New("registrar.tls.max-resolution-rate, max-unreachable-rate: must not be negative")
	}
	for _, b := range []struct {
		name string
		v    int
	}{{"max-pools", r.MaxPools}, {"max-pes-per-pool", r.MaxPEsPerPool}, {"max-connections", r.MaxConnections}, {"max-connections-per-source", r.MaxConnectionsPerSource},
		{"max-pes", r.MaxPEs}, {"max-resolution-items", r.MaxResolutionItems}, {"max-increment", r.MaxIncrement},
		{"max-pes-per-response", r.MaxPEsPerResponse}, {"max-bad-pe-reports", r.MaxBadPEReports}} {
		if b.v < 0 {
			return fmt.Errorf("registrar.%s: %d is negative", b.name, b.v)
		}
	}
	for i, h := range r.AllowHandles {
		if err := CheckHandle(h); err != nil {
			return fmt.Errorf("registrar.allow-handles[%d]: %w", i, err)
		}
	}
	for i, a := range r.AnnounceTo {
		if _, err := netip.ParseAddrPort(a); err != nil {
			return fmt.Errorf("registrar.announce-to[%d]: %q is not IP:PORT", i, a)
		}
	}
	return nil
}

// ServerConfig is the registrar this section configures, as enrp runs
// it: it reads the TLS files and the policy. Validate it first.
func (r RegistrarConfig) ServerConfig(log *slog.Logger) (enrp.ServerConfig, error) {
	return registrarConfig(r, log)
}

// CheckHandle refuses pool handles a registrar refuses: empty or longer
// than enrp.MaxHandleLen (255) bytes.
func CheckHandle(h string) error {
	switch {
	case h == "":
		return errors.New("empty pool handle")
	case len(h) > enrp.MaxHandleLen:
		return fmt.Errorf("pool handle of %d bytes; at most %d", len(h), enrp.MaxHandleLen)
	}
	return nil
}

func (d *DataplaneConfig) mode() (loader.Mode, error) {
	switch d.Mode {
	case "auto", "":
		return loader.ModeAuto, nil
	case "native":
		return loader.ModeNative, nil
	case "generic":
		return loader.ModeGeneric, nil
	}
	return 0, fmt.Errorf("dataplane.mode: %q is not auto, native or generic", d.Mode)
}

// CheckHostPort reports whether s is HOST:PORT as the configuration's
// addresses must be (peers, listen addresses).
func CheckHostPort(s string) error {
	_, _, err := splitHostPort(s)
	return err
}

func splitHostPort(s string) (string, uint16, error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return "", 0, fmt.Errorf("%q is not HOST:PORT", s)
	}
	host := s[:i]
	port, err := strconv.ParseUint(s[i+1:], 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("%q: port %q is not a number from 0 to 65535", s, s[i+1:])
	}
	if strings.HasPrefix(host, "[") != strings.HasSuffix(host, "]") {
		return "", 0, fmt.Errorf("%q: unbalanced brackets", s)
	}
	return host, uint16(port), nil
}

func isPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	// 64-bit trial divisors: a 32-bit d*d wraps past 65535, and the loop
	// would then run on to n itself and call a large prime composite.
	for d := uint64(2); d*d <= uint64(n); d++ {
		if uint64(n)%d == 0 {
			return false
		}
	}
	return true
}
