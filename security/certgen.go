package security

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"
)

// Role is what a certificate's holder is in an RSerPool system; it picks
// the identity URI and the extended key usages.
type Role string

// The roles the certs command issues for.
const (
	RoleRegistrar Role = "registrar" // serves ASAP, dials and serves ENRP
	RolePE        Role = "pe"        // dials its home registrar
	RolePU        Role = "pu"        // dials registrars for resolutions
)

// IdentityURI is the URI SAN a certificate for role and name carries,
// e.g. rspxdp://pe/echo-1: the identity policies are written against.
func IdentityURI(role Role, name string) string {
	return (&url.URL{Scheme: "rspxdp", Host: string(role), Path: "/" + name}).String()
}

// CA is a certificate authority able to issue leaf certificates; for tests
// and the demo, not for production PKI.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// Validity of what NewCA and Issue make.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 825 * 24 * time.Hour
)

// NewCA makes a self-signed ECDSA P-256 CA valid from now.
func NewCA(commonName string, now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"rspxdp"}},
		NotBefore:             now.Add(-time.Hour), // tolerate clock skew between nodes
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// LeafSpec describes a certificate to issue.
type LeafSpec struct {
	Role Role
	// Name is the holder's name: the URI SAN's path and a DNS SAN.
	Name string
	// DNSNames and IPs are extra SANs; a registrar dialled by address
	// needs its addresses here (see ClientOptions.ServerName otherwise).
	DNSNames []string
	IPs      []net.IP
}

// Leaf is an issued certificate and its key.
type Leaf struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// Issue makes an ECDSA P-256 leaf certificate for spec, signed by ca.
// Registrars get both server and client authentication (they accept PEs,
// PUs and peers, and dial peers); PEs and PUs get client authentication,
// plus server authentication for PEs, which accept their users' traffic.
func (ca *CA) Issue(spec LeafSpec, now time.Time) (*Leaf, error) {
	var eku []x509.ExtKeyUsage
	switch spec.Role {
	case RoleRegistrar, RolePE:
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case RolePU:
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		return nil, fmt.Errorf("issue %q: unknown role %q", spec.Name, spec.Role)
	}
	if spec.Name == "" {
		return nil, errors.New("issue: empty name")
	}
	u, err := url.Parse(IdentityURI(spec.Role, spec.Name))
	if err != nil {
		return nil, fmt.Errorf("issue %q: %w", spec.Name, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issue %q: generate key: %w", spec.Name, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: spec.Name, Organization: []string{"rspxdp"}, OrganizationalUnit: []string{string(spec.Role)}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  eku,
		URIs:         []*url.URL{u},
		DNSNames:     append([]string{spec.Name}, spec.DNSNames...),
		IPAddresses:  spec.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue %q: %w", spec.Name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issue %q: parse: %w", spec.Name, err)
	}
	return &Leaf{Cert: cert, Key: key}, nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return s, nil
}

// CertPEM encodes a certificate as PEM.
func CertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// KeyPEM encodes a private key as a PKCS#8 PEM block.
func KeyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
