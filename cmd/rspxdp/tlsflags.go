package main

import (
	"flag"
	"fmt"
	"log/slog"

	"github.com/rspxdp/rspxdp/asap"
	"github.com/rspxdp/rspxdp/security"
	"github.com/rspxdp/rspxdp/transport"
)

// tlsFlags are the --tls-ca, --tls-cert and --tls-key flags every
// subcommand that speaks ASAP or ENRP takes: all three turn on TLS 1.3 with
// mutual authentication, none leaves plain TCP.
type tlsFlags struct{ ca, cert, key *string }

func addTLSFlags(fs *flag.FlagSet) *tlsFlags {
	return &tlsFlags{
		ca:   fs.String("tls-ca", "", "CA bundle (PEM) that verifies peers; with --tls-cert and --tls-key turns on TLS 1.3 with mutual authentication"),
		cert: fs.String("tls-cert", "", "this side's certificate chain (PEM), e.g. from `rspxdp certs`"),
		key:  fs.String("tls-key", "", "private key (PEM) of --tls-cert"),
	}
}

// reloader loads the files; nil, nil when no TLS flag is given.
func (f *tlsFlags) reloader() (*security.Reloader, error) {
	n := 0
	for _, v := range []string{*f.ca, *f.cert, *f.key} {
		if v != "" {
			n++
		}
	}
	switch n {
	case 0:
		return nil, nil
	case 3:
	default:
		return nil, usagef("--tls-ca, --tls-cert and --tls-key go together: give all three or none")
	}
	r, err := security.NewReloader(security.Files{CA: *f.ca, Cert: *f.cert, Key: *f.key})
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	return r, nil
}

// clientTransport is the ASAP transport a PE or PU dials registrars with
// (asap.TLSTransport); nil when no TLS flag is given.
func (f *tlsFlags) clientTransport() (transport.Transport, *security.Reloader, error) {
	r, err := f.reloader()
	if err != nil || r == nil {
		return nil, nil, err
	}
	t, err := asap.TLSTransport(r)
	return t, r, err
}

// warnUnauthenticated says loudly, at start, that a daemon runs without
// authentication (RFC 5355) and what that exposes.
func warnUnauthenticated(log *slog.Logger, who, exposure string) {
	log.Warn("UNAUTHENTICATED: TLS is off, "+exposure+"; give --tls-ca, --tls-cert and --tls-key (see 'rspxdp certs')",
		"mode", who)
}
