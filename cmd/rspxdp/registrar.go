package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/rspxdp/rspxdp/enrp"
	"github.com/rspxdp/rspxdp/security"
)

const registrarUsage = `Usage: rspxdp registrar [flags]

Runs an RSerPool registrar: the ASAP server for pool elements and pool
users (registration, handle resolution, keep-alives) and ENRP peering
with the other registrars of the operation scope (presence, handle
updates, audit, takeover). Runs until SIGINT or SIGTERM, then leaves
gracefully: it tells its peers (a Presence with the leaving flag), one of
them takes its pool elements over at once with the ENRP takeover, and it
closes its connections (after --leave-timeout at the latest, when pool
elements register with another registrar by themselves). A peer whose
connection closes is redialled and judged by the timers below, not by the
close.

Timers (defaults as rsplib's registrar where it has the timer):
  --keepalive-interval   Endpoint Keep-Alive period to each PE this registrar is home for (5s)
  --keepalive-timeout    wait for the Keep-Alive Ack before the PE is removed (5s)
  --heartbeat            ENRP Presence period to every peer, the peer heartbeat cycle (2.444s);
                         a closed peer connection is redialled after 1/16 of it, backing off to 1/2
  --max-time-last-heard  a peer silent this long is asked for a Presence (5s)
  --max-time-no-response a peer that then stays silent this long is taken over (5s)
  --takeover-expiry      wait for Init Takeover Acks before completing anyway (5s)
  --leave-timeout        on SIGINT/SIGTERM, wait this long for a peer to take over (2s; 0: leave without telling peers)
  --announce-interval    ASAP Server Announce period with --announce (1s)
  --drain-timeout        a deregistered PE keeps its existing flows this long (30s)
  --dial-timeout         bound on connecting to a peer or, after a takeover, to a PE (2s)

Security (RFC 5355): --tls-ca, --tls-cert and --tls-key run ASAP and ENRP
over TLS 1.3 with mutual authentication; --policy then says which
certificate identities may register which pool handles from which
networks, act as ENRP peers and resolve (see security/testdata/
policy.example.yaml). A PE identifier belongs to the identity that
registered it: another identity's re-registration or deregistration is
refused with cause 0xa. With TLS, --max-bad-pe-reports counts distinct
reporters, and --max-hr-rate / --max-eu-rate limit each client. SIGHUP
re-reads the certificate files and the policy; open sessions stay.
  rspxdp certs --out pki --registrar r1 --ip 127.0.0.1 --pe echo-1 --pu client
  rspxdp registrar --id 1 --tls-ca pki/ca.pem --tls-cert pki/registrar-r1.pem \
      --tls-key pki/registrar-r1-key.pem --policy policy.yaml

Examples:
  # A single registrar on the standard ports.
  rspxdp registrar --id 1

  # Three registrars on one host, each peering with the other two.
  rspxdp registrar --id 1 --asap 127.0.0.1:3863 --enrp 127.0.0.1:9901 --peer 127.0.0.1:9902 --peer 127.0.0.1:9903
  rspxdp registrar --id 2 --asap 127.0.0.1:3864 --enrp 127.0.0.1:9902 --peer 127.0.0.1:9901 --peer 127.0.0.1:9903
  rspxdp registrar --id 3 --asap 127.0.0.1:3865 --enrp 127.0.0.1:9903 --peer 127.0.0.1:9901 --peer 127.0.0.1:9902

  # Registrars that find each other by multicast announces, no peer list.
  rspxdp registrar --id 4 --peer-announce --advertise-enrp 192.0.2.4:9901 --advertise-asap 192.0.2.4:3863

  # Fast failure detection, announces to the multicast group, registrations
  # only for pool "echo" from 10.0.0.0/8.
  rspxdp registrar --id 7 --keepalive-interval 1s --keepalive-timeout 1s --announce \
      --allow-handle echo --allow-net 10.0.0.0/8`

func runRegistrar(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "registrar", registrarUsage)
	id := fs.String("id", "", "server identifier (decimal or 0x hex, non-zero; default: random)")
	asap := fs.String("asap", ":3863", "ASAP listen address")
	enrpAddr := fs.String("enrp", ":9901", "ENRP listen address")
	advASAP := fs.String("advertise-asap", "", "ASAP address announced to PEs and PUs (default: the listen address, loopback if unspecified)")
	advENRP := fs.String("advertise-enrp", "", "ENRP address announced to peers (default: the listen address, loopback if unspecified)")
	var peers, allowHandles, allowNets, announceTo listFlag
	fs.Var(checkedList{&peers, checkHostPort}, "peer", "static ENRP peer ADDR:PORT (repeatable or comma-separated)")
	fs.Var(&allowHandles, "allow-handle", "pool handle PEs may register (repeatable; default: any)")
	fs.Var(checkedList{&allowNets, checkPrefix}, "allow-net", "source network PEs may register from, CIDR (repeatable; default: any)")
	fs.Var(checkedList{&announceTo, checkIPPort}, "announce-to", "also send Server Announces to this unicast ADDR:PORT (repeatable; implies --announce)")
	tr := fs.String("transport", "tcp", "transport: tcp, sctp or auto")
	announce := fs.Bool("announce", false, "send ASAP Server Announces over UDP multicast (239.0.0.50:3863)")
	peerAnnounce := fs.Bool("peer-announce", false, "discover peers by ENRP Presence announces over UDP multicast (239.0.0.51:9901)")
	kaInt := newDuration(fs, "keepalive-interval", enrp.DefaultKeepAliveInterval, "Endpoint Keep-Alive interval")
	kaTO := newDuration(fs, "keepalive-timeout", enrp.DefaultKeepAliveTimeout, "Endpoint Keep-Alive timeout")
	hb := newDuration(fs, "heartbeat", enrp.DefaultPeerHeartbeatCycle, "peer heartbeat cycle")
	lastHeard := newDuration(fs, "max-time-last-heard", enrp.DefaultPeerMaxTimeLastHeard, "peer max time last heard")
	noResp := newDuration(fs, "max-time-no-response", enrp.DefaultPeerMaxTimeNoResponse, "peer max time no response")
	takeover := newDuration(fs, "takeover-expiry", enrp.DefaultTakeoverExpiry, "takeover expiry interval")
	annInt := newDuration(fs, "announce-interval", enrp.DefaultAnnounceInterval, "Server Announce interval")
	dialTO := newDuration(fs, "dial-timeout", 2*time.Second, "connection set-up timeout to peers and PEs")
	leaveTO := newDuration(fs, "leave-timeout", enrp.DefaultLeaveTimeout, "graceful leave: wait for a peer to take over (0: none)")
	drain := newDuration(fs, "drain-timeout", 30*time.Second, "drain time of deregistered PEs (0: none)")
	maxItems := newCount(fs, "max-resolution-items", enrp.DefaultMaxResolutionItems, "PEs per handle resolution when the PU does not say")
	maxInc := newCount(fs, "max-increment", enrp.DefaultMaxIncrement, "selection state advance per resolution (0: policy default)")
	maxPerResp := newCount(fs, "max-pes-per-response", enrp.DefaultMaxPEsPerResponse, "PEs per ENRP Handle Table Response")
	maxPEs := newCount(fs, "max-pes", enrp.DefaultMaxPEs, "PEs in the whole handlespace; more are refused with Lack of Resources")
	maxPools := newCount(fs, "max-pools", 0, "pools in the handlespace (0: unbounded)")
	maxPerPool := newCount(fs, "max-pes-per-pool", 0, "PEs in one pool (0: unbounded)")
	maxConns := newCount(fs, "max-connections", enrp.DefaultMaxConnections, "associations accepted per listener (ASAP, ENRP); more are closed at once")
	maxBad := newCount(fs, "max-bad-pe-reports", enrp.DefaultMaxBadPEReports, "Endpoint Unreachable reports that remove a PE")
	tf := addTLSFlags(fs)
	policyFile := fs.String("policy", "", "authorisation policy (YAML) mapping certificate identities to pool handles, networks, peering and resolution; required with TLS")
	hrRate := newRate(fs, "max-hr-rate", 0, "handle resolutions per second per client with TLS (0: unlimited, as rsplib)")
	euRate := newRate(fs, "max-eu-rate", 0, "Endpoint Unreachable reports per second per client with TLS (0: unlimited, as rsplib)")
	metrics := fs.String("metrics", "", "Prometheus /metrics, /healthz and /readyz listen address, e.g. :9465 (empty: off)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	cfg := enrp.ServerConfig{
		Transport:  *tr,
		ASAPListen: *asap,
		ENRPListen: *enrpAddr,
		Peers:      peers,
		Config: enrp.Config{
			KeepAliveInterval:     *kaInt,
			KeepAliveTimeout:      *kaTO,
			PeerHeartbeatCycle:    *hb,
			PeerMaxTimeLastHeard:  *lastHeard,
			PeerMaxTimeNoResponse: *noResp,
			TakeoverExpiry:        *takeover,
			AnnounceInterval:      *annInt,
			MaxResolutionItems:    *maxItems,
			MaxIncrement:          *maxInc,
			MaxPEsPerResponse:     *maxPerResp,
			MaxBadPEReports:       *maxBad,
			MaxPEs:                *maxPEs,
			MaxPools:              *maxPools,
			MaxPEsPerPool:         *maxPerPool,
			DrainTimeout:          *drain,
		},
	}
	if *drain <= 0 {
		cfg.DrainTimeout = -1
	}
	cfg.DialTimeout = *dialTO
	cfg.MaxConnections = *maxConns
	// 0 on the command line means no graceful leave; in the config, the default.
	cfg.LeaveTimeout = *leaveTO
	if *leaveTO <= 0 {
		cfg.LeaveTimeout = -1
	}
	switch *tr {
	case "tcp", "sctp", "auto":
	default:
		return usagef("--transport %q: want tcp, sctp or auto", *tr)
	}
	var err error
	if cfg.ID, err = parseServerID(*id); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    string
		dst  *netip.AddrPort
	}{{"--advertise-asap", *advASAP, &cfg.ASAP}, {"--advertise-enrp", *advENRP, &cfg.ENRP}} {
		if f.v == "" {
			continue
		}
		if *f.dst, err = netip.ParseAddrPort(f.v); err != nil {
			return usagef("%s %q: want IP:PORT", f.name, f.v)
		}
	}
	if len(allowHandles) > 0 || len(allowNets) > 0 {
		cfg.Allow = &enrp.AllowList{Handles: allowHandles}
		for _, n := range allowNets {
			p, err := netip.ParsePrefix(n)
			if err != nil {
				return usagef("--allow-net %q: want a CIDR prefix", n)
			}
			cfg.Allow.Networks = append(cfg.Allow.Networks, p)
		}
	}
	for _, a := range announceTo {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			return usagef("--announce-to %q: want IP:PORT", a)
		}
		cfg.AnnounceUnicast = append(cfg.AnnounceUnicast, ap)
	}
	cfg.Announce = *announce || len(cfg.AnnounceUnicast) > 0
	cfg.AnnounceMulticast = *announce
	cfg.PeerAnnounce = *peerAnnounce
	cfg.PeerAnnounceMulticast = *peerAnnounce
	cfg.Logger = env.logger()

	rl, err := tf.reloader()
	if err != nil {
		return err
	}
	switch {
	case rl != nil && *policyFile == "":
		return usagef("TLS needs --policy: which identities may register, peer and resolve (an empty policy is `rules: []`)")
	case rl == nil && *policyFile != "":
		return usagef("--policy needs --tls-ca, --tls-cert and --tls-key: identities come from certificates")
	case rl != nil:
		pf, err := security.OpenPolicyFile(*policyFile)
		if err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		cfg.Security = &enrp.Security{
			TLS: rl, Policy: pf,
			Resolutions:  security.RateConfig{Rate: *hrRate},
			Unreachables: security.RateConfig{Rate: *euRate},
			Reports:      security.ReportConfig{Reporters: *maxBad},
		}
		env.onReload("TLS material", rl.Reload)
		env.onReload("policy", pf.Reload)
	}

	if cfg.Security == nil {
		warnUnauthenticated(cfg.Logger, "registrar", "any host that reaches the ASAP and ENRP ports may register PEs, resolve and peer")
	}
	obs, err := newRegistrarObs(*metrics, &cfg)
	if err != nil {
		return err
	}
	srv, err := enrp.NewServer(ctx, cfg)
	if err != nil {
		obs.close()
		return fmt.Errorf("start registrar: %w", err)
	}
	obs.start(ctx, srv, cfg.Logger)
	defer obs.close()
	fmt.Fprintf(env.stdout, "registrar $%08x: ASAP %v, ENRP %v\n", srv.ID(), srv.ASAPAddr(), srv.ENRPAddr())
	if err := srv.Run(ctx); err != nil {
		return fmt.Errorf("registrar: %w", err)
	}
	return nil
}

// parseServerID parses a non-zero 32-bit server identifier; empty picks a
// random one.
func parseServerID(s string) (uint32, error) {
	if s == "" {
		var b [4]byte
		for {
			if _, err := rand.Read(b[:]); err != nil {
				return 0, fmt.Errorf("random server id: %w", err)
			}
			if id := binary.BigEndian.Uint32(b[:]); id != 0 {
				return id, nil
			}
		}
	}
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil || v == 0 {
		return 0, usagef("--id %q: want a non-zero 32-bit number", s)
	}
	return uint32(v), nil
}
