package main

import (
	"errors"
	"flag"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/rspxdp/rspxdp/node"
)

// registrarFlags are the flags of the registrar that `registrar` and `node`
// both run, defined once so the two cannot drift apart: each writes into a
// node.RegistrarConfig field (the YAML's registrar section), and knows that
// field's YAML path so a configuration error names the flag that set it.
type registrarFlags struct {
	src   node.RegistrarConfig // what the flags parsed into, over the defaults
	id    string
	apply map[string]func(dst *node.RegistrarConfig)
	yaml  map[string]string // YAML path ("registrar.peers") -> flag name
}

// bindFlag defines --name over the field get returns, recording how to copy
// the parsed value into another configuration and the field's YAML path.
func bindFlag[V any](rf *registrarFlags, fs *flag.FlagSet, name, path string, get func(*node.RegistrarConfig) *V,
	value func(*V) flag.Value, usage string) {
	fs.Var(value(get(&rf.src)), name, usage)
	rf.apply[name] = func(dst *node.RegistrarConfig) { *get(dst) = *get(&rf.src) }
	rf.yaml["registrar."+path] = name
}

// addRegistrarFlags defines the registrar's flags on fs with the defaults
// of node.Defaults.
func addRegistrarFlags(fs *flag.FlagSet) *registrarFlags {
	rf := &registrarFlags{src: node.Defaults().Registrar, apply: map[string]func(*node.RegistrarConfig){}, yaml: map[string]string{}}
	type rc = node.RegistrarConfig
	str := func(check func(string) error) func(*string) flag.Value {
		return func(v *string) flag.Value { return checkedString{v, check} }
	}
	list := func(check func(string) error) func(*[]string) flag.Value {
		return func(v *[]string) flag.Value { return checkedList{(*listFlag)(v), check} }
	}
	dur := func(v *node.Duration) flag.Value { return durationFlag{(*time.Duration)(v)} }
	count := func(v *int) flag.Value { return countFlag{v} }
	rate := func(v *float64) flag.Value { return rateFlag{v} }
	boolean := func(v *bool) flag.Value { return boolFlag{v} }
	fs.Func("id", "server identifier `ID`, decimal or 0x hex, non-zero (default: random)", func(s string) error {
		if _, err := parseID(s); err != nil {
			return err
		}
		rf.id = s
		return nil
	})
	rf.yaml["registrar.id"] = "id"

	bindFlag(rf, fs, "asap", "asap", func(c *rc) *string { return &c.ASAP }, str(checkHostPort), "ASAP listen address `HOST:PORT` (PEs and PUs)")
	bindFlag(rf, fs, "enrp", "enrp", func(c *rc) *string { return &c.ENRP }, str(checkHostPort), "ENRP listen address `HOST:PORT` (peer registrars)")
	bindFlag(rf, fs, "advertise-asap", "advertise-asap", func(c *rc) *string { return &c.AdvertiseASAP }, str(checkIPPort),
		"ASAP `IP:PORT` announced to PEs, PUs and peers (default: the listen address, loopback if unspecified)")
	bindFlag(rf, fs, "advertise-enrp", "advertise-enrp", func(c *rc) *string { return &c.AdvertiseENRP }, str(checkIPPort),
		"ENRP `IP:PORT` announced to peers (default: the listen address, loopback if unspecified)")
	bindFlag(rf, fs, "peer", "peers", func(c *rc) *[]string { return &c.Peers }, list(checkHostPort),
		"static ENRP peer `HOST:PORT` (repeatable or comma-separated)")
	bindFlag(rf, fs, "transport", "transport", func(c *rc) *string { return &c.Transport },
		func(v *string) flag.Value { return choiceFlag{v, []string{"tcp", "sctp", "auto"}} }, "transport of ASAP and ENRP")
	bindFlag(rf, fs, "announce", "announce", func(c *rc) *bool { return &c.Announce }, boolean,
		"send ASAP Server Announces over UDP multicast (239.0.0.50:3863)")
	bindFlag(rf, fs, "announce-to", "announce-to", func(c *rc) *[]string { return &c.AnnounceTo }, list(checkIPPort),
		"also send Server Announces to this unicast `IP:PORT` (repeatable; implies announcing)")
	bindFlag(rf, fs, "peer-announce", "peer-announce", func(c *rc) *bool { return &c.PeerAnnounce }, boolean,
		"discover peers by ENRP Presence announces over UDP multicast (239.0.0.51:9901)")

	for _, t := range []struct {
		name, path string
		get        func(*rc) *node.Duration
		usage      string
	}{
		{"keepalive-interval", "keepalive-interval", func(c *rc) *node.Duration { return &c.Timers.KeepAliveInterval }, "Endpoint Keep-Alive period to each PE this registrar is home for"},
		{"keepalive-timeout", "keepalive-timeout", func(c *rc) *node.Duration { return &c.Timers.KeepAliveTimeout }, "wait for the Keep-Alive Ack before the PE is removed"},
		{"heartbeat", "peer-heartbeat-cycle", func(c *rc) *node.Duration { return &c.Timers.PeerHeartbeatCycle }, "ENRP Presence period to every peer"},
		{"max-time-last-heard", "peer-max-time-last-heard", func(c *rc) *node.Duration { return &c.Timers.PeerMaxTimeLastHeard }, "a peer silent this long is asked for a Presence"},
		{"max-time-no-response", "peer-max-time-no-response", func(c *rc) *node.Duration { return &c.Timers.PeerMaxTimeNoResponse }, "a peer then silent this long is taken over"},
		{"takeover-expiry", "takeover-expiry", func(c *rc) *node.Duration { return &c.Timers.TakeoverExpiry }, "wait for Init Takeover Acks before completing anyway"},
		{"announce-interval", "announce-interval", func(c *rc) *node.Duration { return &c.Timers.AnnounceInterval }, "ASAP Server Announce period"},
		{"dial-timeout", "dial-timeout", func(c *rc) *node.Duration { return &c.Timers.DialTimeout }, "bound on connecting to a peer or, after a takeover, to a PE"},
		{"leave-timeout", "leave-timeout", func(c *rc) *node.Duration { return &c.Timers.LeaveTimeout }, "on SIGINT/SIGTERM, wait this long for a peer to take over (0: leave without telling peers)"},
		{"drain-timeout", "drain-timeout", func(c *rc) *node.Duration { return &c.Timers.DrainTimeout }, "a deregistered PE keeps its existing flows this long (0: none)"},
		{"idle-timeout", "idle-timeout", func(c *rc) *node.Duration { return &c.Timers.IdleTimeout }, "close a client connection carrying no PE and no peer after this long silent (0: never)"},
	} {
		bindFlag(rf, fs, t.name, "timers."+t.path, t.get, dur, t.usage)
	}
	for _, b := range []struct {
		name  string
		get   func(*rc) *int
		usage string
	}{
		{"max-resolution-items", func(c *rc) *int { return &c.MaxResolutionItems }, "PEs per handle resolution when the PU does not say"},
		{"max-increment", func(c *rc) *int { return &c.MaxIncrement }, "selection state advance per resolution (0: policy default)"},
		{"max-pes-per-response", func(c *rc) *int { return &c.MaxPEsPerResponse }, "PEs per ENRP Handle Table Response"},
		{"max-pes", func(c *rc) *int { return &c.MaxPEs }, "PEs in the whole handlespace; more are refused with Lack of Resources"},
		{"max-pools", func(c *rc) *int { return &c.MaxPools }, "pools in the handlespace (0: unbounded)"},
		{"max-pes-per-pool", func(c *rc) *int { return &c.MaxPEsPerPool }, "PEs in one pool (0: unbounded)"},
		{"max-connections", func(c *rc) *int { return &c.MaxConnections }, "associations accepted per listener (ASAP, ENRP), lowered to fit the descriptor limit; when full the idlest one carrying no PE or peer is closed for a newcomer"},
		{"max-connections-per-source", func(c *rc) *int { return &c.MaxConnectionsPerSource }, "associations one source address (IPv6: /64) may hold per listener"},
		{"max-bad-pe-reports", func(c *rc) *int { return &c.MaxBadPEReports }, "Endpoint Unreachable reports that remove a PE (with TLS: distinct reporters)"},
	} {
		bindFlag(rf, fs, b.name, b.name, b.get, count, b.usage)
	}
	bindFlag(rf, fs, "allow-handle", "allow-handles", func(c *rc) *[]string { return &c.AllowHandles }, list(node.CheckHandle),
		"pool `HANDLE` PEs may register (repeatable; default: any)")
	bindFlag(rf, fs, "allow-net", "allow-networks", func(c *rc) *[]string { return &c.AllowNetworks }, list(checkPrefix),
		"source network `CIDR` PEs may register from (repeatable; default: any)")
	bindFlag(rf, fs, "tls-ca", "tls.ca", func(c *rc) *string { return &c.TLS.CA }, str(nil),
		"CA bundle (PEM) that verifies peers; with --tls-cert, --tls-key and --policy turns on TLS 1.3 with mutual authentication")
	bindFlag(rf, fs, "tls-cert", "tls.cert", func(c *rc) *string { return &c.TLS.Cert }, str(nil), "this side's certificate chain (PEM), e.g. from rspxdp certs")
	bindFlag(rf, fs, "tls-key", "tls.key", func(c *rc) *string { return &c.TLS.Key }, str(nil), "private key (PEM) of --tls-cert")
	bindFlag(rf, fs, "policy", "tls.policy", func(c *rc) *string { return &c.TLS.Policy }, str(nil),
		"authorisation policy (YAML) mapping certificate identities to pool handles, networks, peering and resolution; required with TLS")
	bindFlag(rf, fs, "max-hr-rate", "tls.max-resolution-rate", func(c *rc) *float64 { return &c.TLS.MaxResolutionRate }, rate,
		"handle resolutions per second per client with TLS (0: unlimited, as rsplib)")
	bindFlag(rf, fs, "max-eu-rate", "tls.max-unreachable-rate", func(c *rc) *float64 { return &c.TLS.MaxUnreachableRate }, rate,
		"Endpoint Unreachable reports per second per client with TLS (0: unlimited, as rsplib)")
	return rf
}

// applyTo copies the flags given on the command line into dst, over what a
// configuration file set.
func (rf *registrarFlags) applyTo(fs *flag.FlagSet, dst *node.RegistrarConfig) {
	fs.Visit(func(f *flag.Flag) {
		if a := rf.apply[f.Name]; a != nil {
			a(dst)
		}
	})
}

// serverID sets dst.ID from --id, or a random one when neither --id nor
// the file gave one.
func (rf *registrarFlags) serverID(dst *node.RegistrarConfig) error {
	if rf.id == "" && dst.ID != 0 {
		return nil
	}
	v, err := parseServerID(rf.id)
	dst.ID = v
	return err
}

var fieldPrefix = regexp.MustCompile(`^([a-z0-9.-]+)(\[\d+\])?(\.[a-z0-9.-]+)?: `)

// flagError rewrites a configuration error that names a YAML field set by
// a flag so that it names the flag: "registrar.tls.policy: required with
// TLS" becomes "--policy: required with TLS". Errors about fields the file
// set keep the field's name, prefixed with the file's.
func (rf *registrarFlags) configError(fs *flag.FlagSet, file string, err error) error {
	msg := err.Error()
	if m := fieldPrefix.FindStringSubmatch(msg); m != nil {
		if name, ok := rf.yaml[m[1]+m[3]]; ok {
			if file == "" || visited(fs, name) {
				return usagef("--%s: %s", name, msg[len(m[0]):])
			}
		}
		if m[1] == "registrar.tls" && m[3] == "" && (file == "" || visited(fs, "tls-ca") || visited(fs, "tls-cert") || visited(fs, "tls-key")) {
			return usagef("--tls-ca, --tls-cert, --tls-key: %s", msg[len(m[0]):])
		}
	}
	if file != "" {
		return usagef("config %s: %s", file, msg)
	}
	return usagef("%s", msg)
}

// visited reports whether --name (or its short form -i for --interface)
// was given.
func visited(fs *flag.FlagSet, name string) bool {
	seen := false
	fs.Visit(func(f *flag.Flag) { seen = seen || f.Name == name || name == "interface" && f.Name == "i" })
	return seen
}

// parseID parses a non-zero 32-bit identifier, decimal or 0x hex.
func parseID(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil || v == 0 {
		return 0, errors.New("want a non-zero 32-bit number")
	}
	return uint32(v), nil
}

// checkedString is a string flag whose value must pass check (nil: any).
type checkedString struct {
	v     *string
	check func(string) error
}

func (c checkedString) String() string {
	if c.v == nil {
		return ""
	}
	return *c.v
}

func (checkedString) typeName() string { return "string" }

func (c checkedString) Set(s string) error {
	if c.check != nil {
		if err := c.check(s); err != nil {
			return err
		}
	}
	*c.v = s
	return nil
}

// boolFlag is a bool flag over a field.
type boolFlag struct{ v *bool }

func (b boolFlag) String() string {
	if b.v == nil {
		return "false"
	}
	return strconv.FormatBool(*b.v)
}

func (b boolFlag) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want true or false")
	}
	*b.v = v
	return nil
}

// IsBoolFlag lets --flag stand for --flag=true.
func (boolFlag) IsBoolFlag() bool { return true }

func (boolFlag) typeName() string { return "" }
