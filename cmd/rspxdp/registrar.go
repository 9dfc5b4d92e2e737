package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/rspxdp/rspxdp/enrp"
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
	rf := addRegistrarFlags(fs)
	metrics := fs.String("metrics", "", "Prometheus /metrics, /healthz and /readyz listen address, e.g. :9465 (empty: off)")
	cpuProfile := addCPUProfileFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	stopProfile, err := cpuProfileFor(*cpuProfile, env.logger())
	if err != nil {
		return err
	}
	defer stopProfile()
	rc := rf.src
	if err := rf.serverID(&rc); err != nil {
		return err
	}
	if err := rc.Validate(); err != nil {
		return rf.configError(fs, "", err)
	}
	log := env.logger()
	cfg, err := rc.ServerConfig(log)
	if err != nil {
		return rf.configError(fs, "", err)
	}
	if sec := cfg.Security; sec != nil {
		env.onReload("TLS material", sec.TLS.Reload)
		env.onReload("policy", sec.Policy.Reload)
	} else {
		warnUnauthenticated(log, "registrar", "any host that reaches the ASAP and ENRP ports may register PEs, resolve and peer")
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
	fmt.Fprintf(env.stdout, "registrar 0x%08x: ASAP %v, ENRP %v\n", srv.ID(), srv.ASAPAddr(), srv.ENRPAddr())
	notifyLifecycle(ctx, closedChan(), cfg.Logger) // listeners bound: Run serves them at once
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
	v, err := parseID(s)
	if err != nil {
		return 0, usagef("--id %q: %v", s, err)
	}
	return v, nil
}
