package selector

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/rspxdp/rspxdp/selector/policy"
)

// Protocol is the IP protocol number of a pool element's user transport.
type Protocol uint8

// Transport protocols RSerPool pools use.
const (
	TCP  Protocol = 6
	UDP  Protocol = 17
	SCTP Protocol = 132
)

// String returns the protocol name.
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// TransportUse is the RFC 5354 transport use of a user transport parameter.
type TransportUse uint8

// Transport uses (RFC 5354 section 3.3).
const (
	DataOnly       TransportUse = 0
	DataAndControl TransportUse = 1
)

// Transport is where a pool element serves its users.
type Transport struct {
	Addrs    []netip.Addr
	Port     uint16
	Protocol Protocol
	Use      TransportUse
}

// overlaps reports whether t and u share the port and at least one address,
// which is how a re-registration is recognised when no owner identity is
// known.
func (t Transport) overlaps(u Transport) bool {
	if t.Port != u.Port {
		return false
	}
	for _, a := range t.Addrs {
		for _, b := range u.Addrs {
			if a == b {
				return true
			}
		}
	}
	return false
}

func (t Transport) equal(u Transport) bool {
	if t.Port != u.Port || t.Protocol != u.Protocol || t.Use != u.Use || len(t.Addrs) != len(u.Addrs) {
		return false
	}
	for i := range t.Addrs {
		if t.Addrs[i] != u.Addrs[i] {
			return false
		}
	}
	return true
}

// State is a pool element's state as the data plane sees it.
type State uint8

const (
	// Active elements are resolved and receive new flows per their weight.
	Active State = iota
	// Draining elements deregistered: they are no longer resolved and get
	// no new flows, but stay listed (weight 0) so their existing flows keep
	// going to them until the drain timeout.
	Draining
)

// String returns the state name.
func (s State) String() string {
	if s == Draining {
		return "draining"
	}
	return "active"
}

// PoolElement is one registration: the record the registrar keeps, echoes
// in handle resolutions and replicates with ENRP.
type PoolElement struct {
	// ID is the pool element identifier, unique within its pool, non-zero.
	ID uint32
	// Home is the identifier of the PE's home registrar; the handlespace
	// checksum is kept per home registrar.
	Home uint32
	// Transport is the user transport.
	Transport Transport
	// Policy is the registered pool member selection policy.
	Policy policy.Settings
	// Lifetime is the registration life; 0 means the entry never expires
	// (the home registrar then relies on keep-alives).
	Lifetime time.Duration
	// Owner identifies who registered the element (TLS identity, or the
	// ASAP association until authentication exists). A registration with
	// an identifier already in use by a different owner is refused (cause
	// 4). When the registered element has no owner, transports must
	// overlap instead.
	Owner string
	// UserData is carried opaquely, e.g. the wire form the registrar echoes
	// in resolutions.
	UserData any

	// Set by the handlespace, ignored on input.

	// Expires is when the registration lapses (zero: never).
	Expires time.Time
	// State is Active, or Draining for a deregistered element.
	State State
	// Reports counts unreachability reports since the element was added.
	Reports int
}

// Cause is an RFC 5352 error cause code.
type Cause uint16

// RFC 5352 section 2.2.7 cause codes.
const (
	CauseUnrecognizedParameter   Cause = 0x1
	CauseUnrecognizedMessage     Cause = 0x2
	CauseInvalidValues           Cause = 0x3
	CauseNonUniqueID             Cause = 0x4
	CauseInconsistentPolicy      Cause = 0x5
	CauseLackOfResources         Cause = 0x6
	CauseInconsistentTransport   Cause = 0x7
	CauseInconsistentDataControl Cause = 0x8
	CauseUnknownPoolHandle       Cause = 0x9
	CauseSecurity                Cause = 0xa
)

var causeNames = map[Cause]string{
	CauseUnrecognizedParameter:   "unrecognized parameter",
	CauseUnrecognizedMessage:     "unrecognized message",
	CauseInvalidValues:           "invalid values",
	CauseNonUniqueID:             "non-unique PE identifier",
	CauseInconsistentPolicy:      "inconsistent pooling policy",
	CauseLackOfResources:         "lack of resources",
	CauseInconsistentTransport:   "inconsistent transport type",
	CauseInconsistentDataControl: "inconsistent data/control configuration",
	CauseUnknownPoolHandle:       "unknown pool handle",
	CauseSecurity:                "rejection due to security considerations",
}

// String returns the RFC name of the cause.
func (c Cause) String() string {
	if s, ok := causeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("cause %d", uint16(c))
}

// Error is a refusal carrying the RFC 5352 cause the registrar puts in its
// response.
type Error struct {
	Cause  Cause
	Handle string
	ID     uint32
	Detail string
}

// Error formats the refusal.
func (e *Error) Error() string {
	s := fmt.Sprintf("pool %q PE 0x%08x: %s", e.Handle, e.ID, e.Cause)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Is matches sentinel errors by cause, so errors.Is(err, ErrNotFound)
// works for any handle and identifier.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Handle == "" && t.ID == 0 && t.Detail == "" && t.Cause == e.Cause
}

// Sentinels for errors.Is.
var (
	ErrInvalid               = &Error{Cause: CauseInvalidValues}
	ErrNonUniqueID           = &Error{Cause: CauseNonUniqueID}
	ErrInconsistentPolicy    = &Error{Cause: CauseInconsistentPolicy}
	ErrLackOfResources       = &Error{Cause: CauseLackOfResources}
	ErrInconsistentTransport = &Error{Cause: CauseInconsistentTransport}
	ErrInconsistentDataCtrl  = &Error{Cause: CauseInconsistentDataControl}
	ErrNotFound              = &Error{Cause: CauseUnknownPoolHandle}
)

// CauseOf returns the RFC 5352 cause carried by err, if any.
func CauseOf(err error) (Cause, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Cause, true
	}
	return 0, false
}
