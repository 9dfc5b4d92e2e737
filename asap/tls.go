package asap

import (
	"fmt"

	"github.com/rspxdp/rspxdp/security"
	"github.com/rspxdp/rspxdp/transport"
)

// DefaultTrustedRegistrars is the identity pattern a registrar's
// certificate must match for TLSTransport's default.
const DefaultTrustedRegistrars = "rspxdp://registrar/*"

// TLSTransport returns the ASAP transport for WithTransport that talks to
// registrars over TLS 1.3 with mutual authentication: this side presents
// r's certificate, and a registrar must present one from r's CA bundle
// whose identity matches one of trusted (DefaultTrustedRegistrars when
// none is given). A certificate from the same CA issued to a PE or PU
// therefore cannot answer resolutions or take registrations (RFC 5355,
// masquerading registrar). It also serves the connections a registrar
// opens to a PE after taking it over. Certificates are read per handshake,
// so r.Reload applies to new connections.
func TLSTransport(r *security.Reloader, trusted ...string) (transport.Transport, error) {
	if len(trusted) == 0 {
		trusted = []string{DefaultTrustedRegistrars}
	}
	c, err := r.DuplexConfig(security.ClientOptions{TrustedServers: trusted})
	if err != nil {
		return nil, fmt.Errorf("asap tls: %w", err)
	}
	t, err := transport.NewTLS(transport.Config{Protocol: transport.ASAP}, c)
	if err != nil {
		return nil, fmt.Errorf("asap tls: %w", err)
	}
	return t, nil
}
