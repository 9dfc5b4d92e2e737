package security

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
)

// Identity is what a peer proved about itself: the subject alternative
// names of its verified leaf certificate, URI SANs first (the
// "rspxdp://pe/echo-1" kind the certs command issues), then DNS SANs.
// An empty Identity is an unauthenticated peer (plain TCP, SCTP).
type Identity []string

// String joins the names for logs.
func (id Identity) String() string {
	if len(id) == 0 {
		return "<unauthenticated>"
	}
	return strings.Join(id, ",")
}

// Authenticated reports whether the peer proved any name.
func (id Identity) Authenticated() bool { return len(id) > 0 }

// Matches reports whether any of the names matches pattern (see Match).
func (id Identity) Matches(pattern string) bool {
	for _, n := range id {
		if Match(pattern, n) {
			return true
		}
	}
	return false
}

// Key returns one stable name for the identity, used as the Owner of what
// it registers and as a rate-limiter key: its first name. Two certificates
// with the same first SAN are the same principal.
func (id Identity) Key() string {
	if len(id) == 0 {
		return ""
	}
	return id[0]
}

// CertIdentity returns the identity names of a certificate that has
// already been verified. It must not be called on unverified certificates:
// anyone can write any SAN into a self-signed one.
func CertIdentity(leaf *x509.Certificate) Identity {
	if leaf == nil {
		return nil
	}
	var id Identity
	for _, u := range leaf.URIs {
		id = append(id, u.String())
	}
	id = append(id, leaf.DNSNames...)
	return id
}

// PeerIdentity returns the identity of the peer of a finished handshake,
// from its verified chain only (nil if the peer's chain was not verified,
// e.g. no client certificate). transport.Conn.Peer().Leaf() gives the same
// leaf: CertIdentity(conn.Peer().Leaf()).
func PeerIdentity(cs tls.ConnectionState) Identity {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil
	}
	return CertIdentity(cs.VerifiedChains[0][0])
}

// CheckOwner decides whether who may deregister or re-register a PE whose
// Owner field (selector.PoolElement.Owner) is owner: only the identity
// that registered it, compared by Key, so a different certificate that
// merely lists the owner's name among its SANs does not pass. A PE
// registered without authentication (owner "") can only be changed
// without authentication: plain TCP and TLS clients never share PEs. The
// registrar answers a refusal with cause 0xa (rejection due to security).
func CheckOwner(owner string, who Identity) error {
	if owner == who.Key() {
		return nil
	}
	o := owner
	if o == "" {
		o = "<unauthenticated>"
	}
	return fmt.Errorf("PE owned by %s, not by %s", o, who)
}
