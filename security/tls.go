package security

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
)

// Files names the PEM files one side of a TLS link is configured from.
type Files struct {
	// CA is a bundle of one or more CA certificates: the roots that verify
	// the peer's certificate chain (both directions use the same bundle).
	CA string
	// Cert is this side's certificate chain, leaf first.
	Cert string
	// Key is the private key of Cert's leaf.
	Key string
}

// material is one consistent load of Files; a Reloader swaps whole
// materials so a handshake never sees a new key with an old certificate.
type material struct {
	cert  *tls.Certificate
	roots *x509.CertPool
}

// Reloader holds the key material read from Files and hands it to TLS
// handshakes through callbacks, so Reload can replace it without touching
// established connections: a TLS session keeps the keys it negotiated, and
// only handshakes that start after Reload see the new files.
//
// It is safe for concurrent use.
type Reloader struct {
	files Files

	mu  sync.RWMutex
	cur *material
}

// NewReloader reads files once and fails if any of them is missing or
// inconsistent (a key that does not match the certificate, a CA file
// without certificates).
func NewReloader(files Files) (*Reloader, error) {
	r := &Reloader{files: files}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload re-reads the files and, if they all load, swaps them in
// atomically. On error the previous material stays in use, so a
// half-written file during a certificate rotation does not take the
// service down. Callers wire SIGHUP to it.
func (r *Reloader) Reload() error {
	m, err := loadMaterial(r.files)
	if err != nil {
		return fmt.Errorf("reload TLS material: %w", err)
	}
	r.mu.Lock()
	r.cur = m
	r.mu.Unlock()
	return nil
}

func (r *Reloader) material() *material {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cur
}

// Leaf returns this side's current leaf certificate.
func (r *Reloader) Leaf() *x509.Certificate { return r.material().cert.Leaf }

// Roots returns the current CA pool.
func (r *Reloader) Roots() *x509.CertPool { return r.material().roots }

func loadMaterial(f Files) (*material, error) {
	if f.CA == "" || f.Cert == "" || f.Key == "" {
		return nil, errors.New("CA, certificate and key files are all required")
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificate found", f.CA)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("load key pair %s, %s: %w", f.Cert, f.Key, err)
	}
	// LoadX509KeyPair fills Leaf since Go 1.23; parse anyway so an older
	// toolchain or GODEBUG setting cannot leave it nil.
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse certificate %s: %w", f.Cert, err)
		}
	}
	return &material{cert: &cert, roots: roots}, nil
}

// ServerConfig returns the configuration for the accepting side (a
// registrar's ASAP and ENRP listeners): TLS 1.3 only, a client certificate
// required and verified against the CA bundle. Certificate and CA bundle
// are looked up per handshake through GetConfigForClient, so Reload takes
// effect for the next connection.
func (r *Reloader) ServerConfig() *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS13}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		m := r.material()
		return &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{*m.cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    m.roots,
			// No resumption: a resumed session would carry a client
			// chain verified against the CA bundle of before a Reload.
			// ASAP and ENRP associations are long-lived, so a full
			// handshake per connection costs little.
			SessionTicketsDisabled: true,
		}, nil
	}
	return base
}

// ClientOptions tunes ClientConfig.
type ClientOptions struct {
	// ServerName, when set, is the name the server's certificate must
	// carry (DNS SAN) instead of the host that was dialled. Registrars
	// found through announces are dialled by IP address: either their
	// certificates carry those IP addresses, or all of them share a DNS
	// SAN set here.
	ServerName string
	// TrustedServers are identity patterns (see Match) the server's
	// verified certificate must match, e.g. "rspxdp://registrar/*": a
	// certificate from the right CA issued to a PE or PU cannot then pose
	// as a registrar (RFC 5355 masquerading registrar). Empty means any
	// certificate the CA bundle verifies.
	TrustedServers []string
}

// ClientConfig returns the configuration for the dialling side (PE, PU, a
// registrar dialling a peer): TLS 1.3 only, the server verified against
// the CA bundle and opts, this side's certificate presented through
// GetClientCertificate so Reload changes it for the next handshake.
//
// The CA bundle is the one loaded when ClientConfig is called: crypto/tls
// reads RootCAs from the config itself, and a client config cannot swap
// them per handshake without switching verification off. Call ClientConfig
// again after Reload (a new transport) to pick up a new bundle.
func (r *Reloader) ClientConfig(opts ClientOptions) (*tls.Config, error) {
	for _, p := range opts.TrustedServers {
		if err := ValidatePattern(p); err != nil {
			return nil, fmt.Errorf("trusted server %q: %w", p, err)
		}
	}
	trusted := append([]string(nil), opts.TrustedServers...)
	c := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    r.material().roots,
		ServerName: opts.ServerName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return r.material().cert, nil
		},
	}
	if len(trusted) > 0 {
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			ids := PeerIdentity(cs)
			for _, p := range trusted {
				if ids.Matches(p) {
					return nil
				}
			}
			return fmt.Errorf("server identity %v is not a trusted registrar", ids)
		}
	}
	return c, nil
}

// DuplexConfig is one configuration for a transport that both dials and
// accepts with the same certificate: a registrar (it accepts PEs, PUs and
// peers and dials peers) or a PE (it dials registrars and accepts the
// registrar that took it over). Dialled connections behave as with
// ClientConfig(opts), accepted ones as with ServerConfig.
func (r *Reloader) DuplexConfig(opts ClientOptions) (*tls.Config, error) {
	c, err := r.ClientConfig(opts)
	if err != nil {
		return nil, err
	}
	c.GetConfigForClient = r.ServerConfig().GetConfigForClient
	return c, nil
}
