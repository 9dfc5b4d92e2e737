package asap

import (
	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/transport"
)

// itRegistrars is WithRegistrars over the transport the test registrars
// speak (itTransport).
func itRegistrars(addrs ...string) Option {
	tr := itTransport()
	return func(c *config) {
		WithRegistrars(addrs...)(c)
		tr(c)
	}
}

// itTransport is WithTransport of what the test registrars speak: TCP, or
// what RSPXDP_TEST_TRANSPORT names (SCTP in the test VM).
func itTransport() Option {
	kind := testenv.Transport()
	tr, err := transport.New(kind, transport.Config{Protocol: transport.ASAP, Logger: quiet()})
	if err != nil {
		panic("test transport " + kind + ": " + err.Error())
	}
	return WithTransport(tr)
}
