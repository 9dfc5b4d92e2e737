package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/rspxdp/rspxdp/bgp"
	"github.com/rspxdp/rspxdp/node"
)

const nodeUsage = `Usage: rspxdp node [--config rspxdp.yaml] [flags]

Runs a registrar (ENRP + ASAP) and the XDP data plane on this host, and keeps
the BPF maps equal to the handlespace: flows of RSerPool-unaware clients sent
to a virtual service (VIP:PORT/PROTO) go to the pool's elements, by policy
weight, at line rate. Needs root (BPF, XDP).

Every handlespace change reaches the maps: a PE that fails its keep-alives
loses its flows at once (they move on their next packet), a PE that
deregisters drains (its established flows stay, new flows go elsewhere).
Several nodes with the same --vip list and --seed program identical tables,
so an ECMP router may send a flow to any of them.

The -i interfaces are the client side. Packets arriving there for the
registrar's ASAP and ENRP ports or the metrics port (TCP, UDP, SCTP, IPv4
and IPv6) are dropped by the XDP program unless their source is in a
--control-net, and counted (rspxdp_dataplane_drops_total{reason="control_port"}):
no client can register, resolve or speak ENRP. PEs and peers belong on the
control side (other interfaces); listening on a -i interface's address needs
--listen-on-client-side. PEs behind another interface than the packets
arrived on are reached by XDP_REDIRECT automatically.

Flags override the configuration file (see rspxdp.example.yaml for every field,
commented). A bad configuration is refused at start naming the field; nothing
is attached then.

Examples:
  # One node, clients arrive on eth0, pool "web" behind 10.200.1.1:80/tcp.
  rspxdp node -i eth0 --vip web=10.200.1.1:80/tcp

  # From a file, overriding the registrar id and adding a peer.
  rspxdp node --config /etc/rspxdp.yaml --id 2 --peer 192.0.2.1:9901

  # Two nodes behind ECMP (same VIPs and seed on both), fast failover.
  rspxdp node --id 1 -i eth0 --vip web=10.200.1.1:80/tcp --peer 192.0.2.2:9901 \
      --keepalive-interval 100ms --keepalive-timeout 100ms
  rspxdp node --id 2 -i eth0 --vip web=10.200.1.1:80/tcp --peer 192.0.2.1:9901 \
      --keepalive-interval 100ms --keepalive-timeout 100ms

  # Announce the VIPs to an upstream router over BGP (ECMP over several
  # nodes); on SIGTERM withdraw, wait 5s, then leave ENRP and exit.
  rspxdp node -i eth0 --vip web=10.200.1.1:80/tcp --bgp-asn 65001 \
      --bgp-router-id 192.0.2.11 --bgp-peer 192.0.2.1,asn=65000,hold-time=9s

  # Restart without dropping established flows.
  rspxdp node --config /etc/rspxdp.yaml --keep-on-exit
  # ... and remove what such a node left, once it is stopped for good.
  rspxdp node detach --config /etc/rspxdp.yaml

Inspect the maps with: bpftool map dump pinned /sys/fs/bpf/rspxdp/<map>`

func runNode(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) > 0 && args[0] == "detach" {
		return runNodeDetach(ctx, env, args[1:])
	}
	fs := newFlagSet(env, "node", nodeUsage)
	d := node.Defaults()
	cfgPath := fs.String("config", "", "YAML configuration file (flags override it)")
	rf := addRegistrarFlags(fs)
	for path, name := range nodeFlagFields {
		rf.yaml[path] = name
	}
	var ifaces, vips listFlag
	fs.Var(&ifaces, "i", "interface to attach XDP to (repeatable)")
	fs.Var(&ifaces, "interface", "same as -i")
	fs.Var(&vips, "vip", "virtual service HANDLE=ADDR:PORT/PROTO, PROTO tcp|udp|sctp (repeatable)")
	mode := fs.String("mode", d.Dataplane.Mode, "XDP attach mode: auto, native or generic")
	fwd := fs.String("forwarding", d.Dataplane.Forwarding, "ipip (encapsulate to the PE) or l2dsr (rewrite the MAC)")
	pinDir := fs.String("pin-dir", d.Dataplane.PinDir, "bpffs directory for pinned maps and links")
	tableSize := fs.Uint("table-size", 0, "Maglev ring size per VIP, a prime (default 65537)")
	seed := fs.String("seed", "", "flow hash seed, the same on every node (default 0x52535058)")
	flood := fs.Uint("flood-limit", 0, "new flows/s per CPU past which flows get no connection entry (default 125000; 0: off)")
	connTable := fs.Uint("conn-table-size", 0, "connection table capacity, flows (default 262144)")
	src4 := fs.String("source-v4", "", "outer source address of IPIP packets")
	src6 := fs.String("source-v6", "", "outer source address of IPv6-in-IPv6 packets")
	redirect := fs.Bool("redirect", false, "XDP_REDIRECT every packet, also to PEs behind the ingress interface (PEs behind another interface are always redirected)")
	keep := fs.Bool("keep-on-exit", false, "leave the program attached and maps pinned on exit (restart without dropping flows)")
	metrics := fs.String("metrics", d.Metrics, "Prometheus listen address (empty: off)")
	cpuProfile := addCPUProfileFlag(fs)
	reconcile := newDuration(fs, "reconcile-every", 0, "drift check period (default 10s)")
	// The client-side/control-side model (edge): who may reach the
	// registrar through the client-facing interfaces.
	var controlNets listFlag
	fs.Var(&controlNets, "control-net", "source PREFIX allowed to reach the ASAP, ENRP and metrics ports through the -i interfaces (repeatable; default: none)")
	clientSide := fs.Bool("listen-on-client-side", false, "allow --asap/--enrp on an address of a -i interface")
	var bgpPeers repeatFlag
	var bgpComms listFlag
	bgpASN := fs.Uint("bgp-asn", 0, "BGP: this node's AS number (BGP is off without --bgp-peer)")
	bgpRID := fs.String("bgp-router-id", "", "BGP: router id, an IPv4 address")
	fs.Var(&bgpPeers, "bgp-peer", "BGP: router ADDR,asn=N[,hold-time=D][,password=MD5][,port=N] (repeatable)")
	fs.Var(&bgpComms, "bgp-community", "BGP: community on every VIP, ASN:VALUE or no-export (repeatable)")
	bgpMin := fs.Int("bgp-min-pes", 0, "BGP: active PEs a VIP's pool needs to be announced (default 1)")
	bgpDrain := newDuration(fs, "bgp-drain", 0, "BGP: on SIGTERM, forwarding time after the withdrawal (default 5s)")
	bgpSettle := newDuration(fs, "bgp-settle", 0, "BGP: healthy time before a VIP is announced (default 1s)")
	bgpPort := fs.Int("bgp-listen-port", 0, "BGP: port to accept sessions on (default 179; -1: dial out only)")
	bgpGR := newDuration(fs, "bgp-graceful-restart", 0, "BGP: restart time offered; with --keep-on-exit routes stay across a restart (0: off)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	// buildConfig reads the file and lays the flags over it: at start, and
	// again on SIGHUP so a reload sees the file's new content.
	buildConfig := func() (node.Config, error) {
		cfg := d
		if *cfgPath != "" {
			var err error
			if cfg, err = node.LoadFile(*cfgPath); err != nil {
				return cfg, usagef("%v", err)
			}
		}
		rf.applyTo(fs, &cfg.Registrar)
		var flagErr error
		fs.Visit(func(f *flag.Flag) {
			r, dp := &cfg.Registrar, &cfg.Dataplane
			switch f.Name {
			case "i", "interface":
				dp.Interfaces = ifaces
			case "mode":
				dp.Mode = *mode
			case "forwarding":
				dp.Forwarding = *fwd
			case "pin-dir":
				dp.PinDir = *pinDir
			case "table-size":
				dp.TableSize = uint32(*tableSize)
			case "seed":
				v, err := strconv.ParseUint(*seed, 0, 32)
				if err != nil {
					flagErr = usagef("--seed %q: want a 32-bit number", *seed)
				}
				dp.Seed = uint32(v)
			case "flood-limit":
				dp.FloodLimit = uint32(*flood)
			case "conn-table-size":
				dp.ConnTableSize = uint32(*connTable)
			case "source-v4":
				dp.SourceV4 = *src4
			case "source-v6":
				dp.SourceV6 = *src6
			case "redirect":
				dp.Redirect = *redirect
			case "keep-on-exit":
				dp.KeepOnExit = *keep
			case "metrics":
				cfg.Metrics = *metrics
			case "reconcile-every":
				cfg.ReconcileEvery = node.Duration(*reconcile)
			case "control-net":
				dp.ControlNetworks = controlNets
			case "listen-on-client-side":
				r.ListenOnClientSide = *clientSide
			case "log-level":
				cfg.LogLevel = env.logLevel
			case "log-format":
				cfg.LogFormat = env.logFormat
			case "bgp-asn":
				cfg.BGP.ASN = uint32(*bgpASN)
			case "bgp-router-id":
				cfg.BGP.RouterID = *bgpRID
			case "bgp-peer":
				cfg.BGP.Peers = nil // flags replace the file's list
				for _, s := range bgpPeers {
					p, err := bgp.ParsePeer(s)
					if err != nil && flagErr == nil {
						flagErr = usagef("--bgp-peer: %v", err)
					}
					cfg.BGP.Peers = append(cfg.BGP.Peers, p)
				}
			case "bgp-community":
				cfg.BGP.Communities = bgpComms
			case "bgp-min-pes":
				cfg.BGP.MinPEs = *bgpMin
			case "bgp-drain":
				cfg.BGP.Drain = *bgpDrain
			case "bgp-settle":
				cfg.BGP.Settle = *bgpSettle
			case "bgp-listen-port":
				cfg.BGP.ListenPort = int32(*bgpPort)
			case "bgp-graceful-restart":
				cfg.BGP.GracefulRestart = *bgpGR
			}
		})
		if flagErr != nil {
			return cfg, flagErr
		}
		if len(vips) > 0 {
			cfg.VIPs = nil // flags replace the file's list
			for _, s := range vips {
				v, err := node.ParseVIP(s)
				if err != nil {
					return cfg, usagef("--%v", err)
				}
				cfg.VIPs = append(cfg.VIPs, v)
			}
		}
		if rf.id != "" {
			v, err := parseServerID(rf.id)
			if err != nil {
				return cfg, err
			}
			cfg.Registrar.ID = v
		}
		if cfg.LogLevel == "" {
			cfg.LogLevel = env.logLevel
		}
		if cfg.LogFormat == "" {
			cfg.LogFormat = env.logFormat
		}
		if err := cfg.Validate(); err != nil {
			return cfg, rf.configError(fs, *cfgPath, err)
		}
		return cfg, nil
	}
	cfg, err := buildConfig()
	if err != nil {
		return err
	}
	if cfg.Registrar.ID == 0 {
		// A random id, kept by reloads (node.Reload treats 0 as "same").
		if cfg.Registrar.ID, err = parseServerID(""); err != nil {
			return err
		}
	}
	env.logLevel = cfg.LogLevel // the file's, unless --log-level
	env.logFormat = cfg.LogFormat
	log := env.logger()
	stopProfile, err := cpuProfileFor(*cpuProfile, log)
	if err != nil {
		return err
	}
	defer stopProfile()
	if !cfg.Registrar.TLS.Enabled() {
		warnUnauthenticated(log, "node", "any host that reaches the ASAP and ENRP ports may register PEs (and so steer the VIPs' traffic), resolve and peer")
	}
	warnPrivateBPFFS(log, cfg.Dataplane.PinDir)
	n, err := node.New(ctx, cfg, log, node.WithLevel(env.level))
	if err != nil {
		return fmt.Errorf("start node: %w", err)
	}
	// SIGHUP: the file and flags again (VIPs, peers, log level, control
	// networks; certificates and policy re-read). node.Reload keeps the
	// old state when anything is wrong.
	env.onReload("node configuration", func() error {
		c, err := buildConfig()
		if err != nil {
			return err
		}
		return n.Reload(c)
	})
	fmt.Fprintf(env.stdout, "node 0x%08x: ASAP %v, ENRP %v, XDP on %v, %d VIPs, metrics %v\n",
		n.Registrar().ID(), n.Registrar().ASAPAddr(), n.Registrar().ENRPAddr(), cfg.Dataplane.Interfaces, len(cfg.VIPs), n.MetricsAddr())
	notifyLifecycle(ctx, n.Readiness().Serving(), log)
	return n.Run(ctx)
}

// nodeFlagFields names the flag of each field of the node's YAML outside
// the registrar section (addRegistrarFlags names those), so that an error
// in a value given by flag names the flag, and a test can check every field
// has one.
var nodeFlagFields = map[string]string{
	"registrar.listen-on-client-side": "listen-on-client-side",
	"dataplane.interfaces":            "interface",
	"dataplane.mode":                  "mode",
	"dataplane.forwarding":            "forwarding",
	"dataplane.pin-dir":               "pin-dir",
	"dataplane.table-size":            "table-size",
	"dataplane.seed":                  "seed",
	"dataplane.conn-table-size":       "conn-table-size",
	"dataplane.flood-limit":           "flood-limit",
	"dataplane.source-v4":             "source-v4",
	"dataplane.source-v6":             "source-v6",
	"dataplane.redirect":              "redirect",
	"dataplane.keep-on-exit":          "keep-on-exit",
	"dataplane.control-networks":      "control-net",
	"vips":                            "vip",
	"metrics":                         "metrics",
	"reconcile-every":                 "reconcile-every",
	"log-level":                       "log-level",
	"log-format":                      "log-format",
	"bgp.asn":                         "bgp-asn",
	"bgp.router-id":                   "bgp-router-id",
	"bgp.listen-port":                 "bgp-listen-port",
	"bgp.peers":                       "bgp-peer",
	"bgp.min-pes":                     "bgp-min-pes",
	"bgp.drain":                       "bgp-drain",
	"bgp.settle":                      "bgp-settle",
	"bgp.communities":                 "bgp-community",
	"bgp.graceful-restart":            "bgp-graceful-restart",
}

// repeatFlag collects every use of a repeatable flag whose value has commas
// of its own (--bgp-peer ADDR,asn=N,...).
type repeatFlag []string

func (r *repeatFlag) String() string     { return strings.Join(*r, " ") }
func (r *repeatFlag) Set(v string) error { *r = append(*r, v); return nil }
