package enrp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/rspxdp/rspxdp/security"
	"github.com/rspxdp/rspxdp/transport"
	"github.com/rspxdp/rspxdp/wire"
)

// DefaultTrustedPeers is the identity pattern a registrar's certificate
// must match when this registrar dials it as an ENRP peer or a PE.
const DefaultTrustedPeers = "rspxdp://registrar/*"

// Security turns on RFC 5355's answers in a Server: ASAP and ENRP over TLS
// 1.3 with mutual authentication, authorisation by a policy file, PE
// identifiers owned by the identity that registered them, per-client rate
// limits and the distinct-reporters rule for Endpoint Unreachable.
//
// The checks that need the handlespace (ownership) run in the Core, fed
// with the identity as PoolElement.Owner and Deregistration.Owner; the
// rest run in the Server before a message reaches the Core, so the Core
// stays a pure state machine and the resolution path pays nothing when
// Security is nil.
type Security struct {
	// TLS holds this registrar's certificate, key and CA bundle; it is
	// consulted per handshake, so Reload takes effect for new
	// connections without dropping open ones.
	TLS *security.Reloader
	// Policy says which identities may register which pool handles from
	// where, act as ENRP peers, and resolve. Reload it to apply a change.
	Policy *security.PolicyFile
	// TrustedPeers are the identity patterns registrars this one dials must
	// present (default DefaultTrustedPeers).
	TrustedPeers []string
	// Resolutions and Unreachables limit Handle Resolutions and Endpoint
	// Unreachable reports per client (identity and address); the zero
	// value is unlimited, as rsplib.
	Resolutions, Unreachables security.RateConfig
	// Reports sets how many distinct reporters must report a PE before it
	// is removed (default 3, rsplib's MaxBadPEReports).
	Reports security.ReportConfig
}

// guard is a Server's running Security.
type guard struct {
	cfg     *Security
	hr, eu  *security.RateLimiter
	reports *security.ReportCounter
}

func newGuard(cfg *Security) (*guard, error) {
	if cfg.TLS == nil || cfg.Policy == nil {
		return nil, errors.New("security: TLS material and a policy are both required")
	}
	return &guard{
		cfg:     cfg,
		hr:      security.NewRateLimiter(cfg.Resolutions),
		eu:      security.NewRateLimiter(cfg.Unreachables),
		reports: security.NewReportCounter(cfg.Reports),
	}, nil
}

// tlsConfig serves both directions of the registrar's TLS transport:
// accepted connections get the reloading server side (client certificate
// required), dialled ones present our certificate and check the peer's
// identity against TrustedPeers.
func (g *guard) tlsConfig() (*tls.Config, error) {
	trusted := g.cfg.TrustedPeers
	if len(trusted) == 0 {
		trusted = []string{DefaultTrustedPeers}
	}
	return g.cfg.TLS.DuplexConfig(security.ClientOptions{TrustedServers: trusted})
}

// transports builds the TLS transports for ASAP and ENRP.
func (g *guard) transports(kind string, cfg transport.Config) (asapT, enrpT transport.Transport, err error) {
	if kind != "" && kind != "tcp" {
		return nil, nil, fmt.Errorf("security: TLS runs over TCP, not %q", kind)
	}
	tc, err := g.tlsConfig()
	if err != nil {
		return nil, nil, err
	}
	cfg.Protocol = transport.ASAP
	if asapT, err = transport.NewTLS(cfg, tc); err != nil {
		return nil, nil, err
	}
	cfg.Protocol = transport.ENRP
	if enrpT, err = transport.NewTLS(cfg, tc); err != nil {
		return nil, nil, err
	}
	return asapT, enrpT, nil
}

// identity is the verified identity of l's peer, computed once.
func (l *link) identity() security.Identity {
	if l.ident == nil {
		l.ident = security.CertIdentity(l.conn.Peer().Leaf())
	}
	return l.ident
}

// admit decides what becomes of message m from l before the Core sees
// it: passed on (possibly with the sender's identity filled in), answered
// here, or dropped. It runs on l's reader goroutine.
func (s *Server) admit(l *link, remote netip.AddrPort, m Message) (Message, bool) {
	g := s.guard
	id := l.identity()
	pol := g.cfg.Policy.Current()
	src := remote.Addr()
	if l.proto == wire.ENRP {
		if !pol.MayPeer(id) {
			s.log.Warn("ENRP message from an identity that may not peer: closing", "identity", id.String(),
				"remote", remote.String(), "message", msgName(m))
			l.close()
			return nil, false
		}
		return m, true
	}
	now := time.Now()
	switch m := m.(type) {
	case Registration:
		ok := pol.MayRegister(id, []byte(m.Handle), src)
		// Nor may a PE point a pool at hosts outside its networks.
		for _, a := range m.PE.Transport.Addrs {
			ok = ok && pol.MayRegister(id, []byte(m.Handle), a)
		}
		if !ok {
			s.log.Warn("registration rejected", "pool", m.Handle, "pe", idString(m.PE.ID), "identity", id.String(),
				"source", src.String(), "reason", "policy: identity may not register this handle from here")
			s.answer(l, RegistrationResponse{Handle: m.Handle, PEID: m.PE.ID, Reject: true, Cause: CauseRejectionDueToSecurity})
			return nil, false
		}
		m.PE.Owner = id.Key()
		return m, true
	case Deregistration:
		m.Owner = id.Key()
		return m, true
	case HandleResolution:
		if !g.hr.Allow(security.ClientKey(id, remote), now) {
			s.log.Debug("handle resolution over rate limit dropped", "identity", id.String(), "remote", remote.String())
			return nil, false
		}
		if !pol.MayResolve(id, []byte(m.Handle)) {
			s.log.Warn("handle resolution refused by policy", "pool", m.Handle, "identity", id.String(), "remote", remote.String())
			s.answer(l, HandleResolutionResponse{Handle: m.Handle, Cause: CauseRejectionDueToSecurity})
			return nil, false
		}
		return m, true
	case EndpointUnreachable:
		reporter := security.ClientKey(id, remote)
		if !g.eu.Allow(reporter, now) {
			s.log.Debug("unreachable report over rate limit dropped", "identity", id.String(), "remote", remote.String())
			return nil, false
		}
		// One reporter counts once: the Core (MaxBadPEReports 1 under
		// Security) removes the PE only when enough distinct ones agree.
		if !g.reports.Report(security.TargetKey([]byte(m.Handle), m.PEID), reporter, now) {
			return nil, false
		}
		return m, true
	}
	return m, true
}

// answer queues a reply on l without involving the Core.
func (s *Server) answer(l *link, m Message) {
	s.mu.Lock()
	later := s.flushLocked([]Output{{Link: l.id, Msg: m}})
	s.mu.Unlock()
	s.finish(later)
}
