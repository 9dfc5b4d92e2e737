package asap

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/rspxdp/rspxdp/transport"
)

// portHint adds a hint to err, a failed exchange with the registrar at
// addr, when addr names the other protocol's registered port and the
// registrar closed the connection without answering, which is what it does
// to a client speaking the wrong protocol. A PU pointed at the ENRP port
// then fails at once with "is 9901 the ENRP port? use the ASAP port 3863"
// instead of waiting for a timeout.
func portHint(addr string, want transport.Protocol, err error) error {
	if err == nil || !(errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF)) {
		return err
	}
	_, port, perr := net.SplitHostPort(addr)
	if perr != nil {
		return err
	}
	other := transport.ENRP
	if want == transport.ENRP {
		other = transport.ASAP
	}
	if p, _ := strconv.Atoi(port); p == other.DefaultPort() {
		return fmt.Errorf("%w (closed without an answer: is %d the %s port? use the %s port %d)",
			err, p, other, want, want.DefaultPort())
	}
	return fmt.Errorf("%w (closed without an answer: is port %s the registrar's %s port? %s is %d by default)",
		err, port, want, want, want.DefaultPort())
}
