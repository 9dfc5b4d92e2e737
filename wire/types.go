package wire

import "fmt"

// Protocol tells ASAP from ENRP: both share the header layout and the
// parameter codec but number their message types independently.
type Protocol uint8

const (
	// ASAP is the Aggregate Server Access Protocol (RFC 5352).
	ASAP Protocol = 1
	// ENRP is the Endpoint haNdlespace Redundancy Protocol (RFC 5353).
	ENRP Protocol = 2
)

// Well-known SCTP payload protocol identifiers and ports (RFC 5352, 5353).
const (
	PPIDASAP = 11
	PPIDENRP = 12
	PortASAP = 3863
	PortENRP = 9901
)

// String returns "ASAP" or "ENRP".
func (p Protocol) String() string {
	switch p {
	case ASAP:
		return "ASAP"
	case ENRP:
		return "ENRP"
	}
	return fmt.Sprintf("Protocol(%d)", uint8(p))
}

// ProtocolForPPID maps an SCTP PPID to its protocol; ok is false for others.
func ProtocolForPPID(ppid uint32) (p Protocol, ok bool) {
	switch ppid {
	case PPIDASAP:
		return ASAP, true
	case PPIDENRP:
		return ENRP, true
	}
	return 0, false
}

// Type is a message type. Its meaning depends on the [Protocol].
type Type uint8

// ASAP message types (RFC 5352 section 2.2).
const (
	ASAPRegistration             Type = 0x01
	ASAPDeregistration           Type = 0x02
	ASAPRegistrationResponse     Type = 0x03
	ASAPDeregistrationResponse   Type = 0x04
	ASAPHandleResolution         Type = 0x05
	ASAPHandleResolutionResponse Type = 0x06
	ASAPEndpointKeepAlive        Type = 0x07
	ASAPEndpointKeepAliveAck     Type = 0x08
	ASAPEndpointUnreachable      Type = 0x09
	ASAPServerAnnounce           Type = 0x0a
	ASAPCookie                   Type = 0x0b
	ASAPCookieEcho               Type = 0x0c
	ASAPBusinessCard             Type = 0x0d
	ASAPError                    Type = 0x0e
)

// ENRP message types (RFC 5353 section 2).
const (
	ENRPPresence            Type = 0x01
	ENRPHandleTableRequest  Type = 0x02
	ENRPHandleTableResponse Type = 0x03
	ENRPHandleUpdate        Type = 0x04
	ENRPListRequest         Type = 0x05
	ENRPListResponse        Type = 0x06
	ENRPInitTakeover        Type = 0x07
	ENRPInitTakeoverAck     Type = 0x08
	ENRPTakeoverServer      Type = 0x09
	ENRPError               Type = 0x0a
)

var asapNames = [...]string{
	ASAPRegistration:             "Registration",
	ASAPDeregistration:           "Deregistration",
	ASAPRegistrationResponse:     "RegistrationResponse",
	ASAPDeregistrationResponse:   "DeregistrationResponse",
	ASAPHandleResolution:         "HandleResolution",
	ASAPHandleResolutionResponse: "HandleResolutionResponse",
	ASAPEndpointKeepAlive:        "EndpointKeepAlive",
	ASAPEndpointKeepAliveAck:     "EndpointKeepAliveAck",
	ASAPEndpointUnreachable:      "EndpointUnreachable",
	ASAPServerAnnounce:           "ServerAnnounce",
	ASAPCookie:                   "Cookie",
	ASAPCookieEcho:               "CookieEcho",
	ASAPBusinessCard:             "BusinessCard",
	ASAPError:                    "Error",
}

var enrpNames = [...]string{
	ENRPPresence:            "Presence",
	ENRPHandleTableRequest:  "HandleTableRequest",
	ENRPHandleTableResponse: "HandleTableResponse",
	ENRPHandleUpdate:        "HandleUpdate",
	ENRPListRequest:         "ListRequest",
	ENRPListResponse:        "ListResponse",
	ENRPInitTakeover:        "InitTakeover",
	ENRPInitTakeoverAck:     "InitTakeoverAck",
	ENRPTakeoverServer:      "TakeoverServer",
	ENRPError:               "Error",
}

// Known reports whether t is a message type of protocol p.
func (p Protocol) Known(t Type) bool {
	switch p {
	case ASAP:
		return t >= ASAPRegistration && t <= ASAPError
	case ENRP:
		return t >= ENRPPresence && t <= ENRPError
	}
	return false
}

// TypeName returns the message type's name, e.g. "Registration", or
// "Type(0x2a)" for a type the protocol does not define.
func (p Protocol) TypeName(t Type) string {
	if p.Known(t) {
		if p == ASAP {
			return asapNames[t]
		}
		return enrpNames[t]
	}
	return fmt.Sprintf("Type(%#02x)", uint8(t))
}

// Types lists every message type of p, in numeric order.
func (p Protocol) Types() []Type {
	var n Type
	switch p {
	case ASAP:
		n = ASAPError
	case ENRP:
		n = ENRPError
	}
	ts := make([]Type, 0, n)
	for t := Type(1); t <= n; t++ {
		ts = append(ts, t)
	}
	return ts
}

// Flags is the flags octet of the common header. Which bits mean something
// depends on the message type; the constants below name them.
type Flags uint8

const (
	// FlagReject (R) marks a rejected ASAP Registration Response (and, as
	// rsplib sets it, Deregistration and Handle Resolution Response), or
	// a rejected ENRP Handle Table / List Response.
	FlagReject Flags = 0x01
	// FlagHome (H) in an ASAP Endpoint Keep-Alive asks the PE to take the
	// sender as its new home registrar.
	FlagHome Flags = 0x01
	// FlagReplyRequired (R) in an ENRP Presence asks the peer to answer.
	FlagReplyRequired Flags = 0x01
	// FlagOwnChildrenOnly (W) in an ENRP Handle Table Request asks only
	// for the PEs the receiver is home registrar of.
	FlagOwnChildrenOnly Flags = 0x01
	// FlagMoreToSend (M) in an ENRP Handle Table Response says the table
	// continues in another response.
	FlagMoreToSend Flags = 0x02
	// FlagTakeover (T) in an ENRP Handle Update suggests that the
	// receiver takes the PE over (draft-dreibholz-rserpool-enrp-takeover).
	FlagTakeover Flags = 0x01
	// FlagDrain (D) in an ENRP Handle Update that deletes a PE is an
	// rspxdp extension in a bit RFC 5353 leaves reserved (receivers ignore
	// it): the PE deregistered, so the receiver drains it — keeps it for
	// its established flows — rather than dropping it as failed.
	FlagDrain Flags = 0x80
	// FlagLeaving (L) in an ENRP Presence is an rspxdp extension in a bit
	// RFC 5353 leaves reserved (receivers ignore it): the sender is
	// shutting down and asks its peers to take its PEs over now instead of
	// after their max-time-last-heard and max-time-no-response timers.
	FlagLeaving Flags = 0x80
)

// FlagNames returns the names of the flags set in f for message type t of
// protocol p, e.g. ["R","M"]; bits with no meaning are shown as hex.
func (p Protocol) FlagNames(t Type, f Flags) []string {
	var names []string
	type bit struct {
		f    Flags
		name string
	}
	var bits []bit
	switch {
	case p == ASAP && (t == ASAPRegistrationResponse || t == ASAPDeregistrationResponse || t == ASAPHandleResolutionResponse):
		bits = []bit{{FlagReject, "R"}}
	case p == ASAP && t == ASAPEndpointKeepAlive:
		bits = []bit{{FlagHome, "H"}}
	case p == ENRP && t == ENRPPresence:
		bits = []bit{{FlagReplyRequired, "R"}, {FlagLeaving, "L"}}
	case p == ENRP && t == ENRPHandleTableRequest:
		bits = []bit{{FlagOwnChildrenOnly, "W"}}
	case p == ENRP && t == ENRPHandleTableResponse:
		bits = []bit{{FlagReject, "R"}, {FlagMoreToSend, "M"}}
	case p == ENRP && t == ENRPListResponse:
		bits = []bit{{FlagReject, "R"}}
	case p == ENRP && t == ENRPHandleUpdate:
		bits = []bit{{FlagTakeover, "T"}, {FlagDrain, "D"}}
	}
	rest := f
	for _, b := range bits {
		if f&b.f != 0 {
			names = append(names, b.name)
			rest &^= b.f
		}
	}
	if rest != 0 {
		names = append(names, fmt.Sprintf("%#02x", uint8(rest)))
	}
	return names
}

// ParamType is a parameter type as on the wire: the top two bits are the
// action to take when the receiver does not know the type (see [Action]),
// the low 14 bits the type code proper.
type ParamType uint16

// Parameter types (RFC 5354 section 3) and rsplib's Handle Resolution
// option, which rsplib sends with the "skip" action bit set.
const (
	ParamIPv4Address       ParamType = 0x0001
	ParamIPv6Address       ParamType = 0x0002
	ParamDCCPTransport     ParamType = 0x0003
	ParamSCTPTransport     ParamType = 0x0004
	ParamTCPTransport      ParamType = 0x0005
	ParamUDPTransport      ParamType = 0x0006
	ParamUDPLiteTransport  ParamType = 0x0007
	ParamPolicy            ParamType = 0x0008
	ParamPoolHandle        ParamType = 0x0009
	ParamPoolElement       ParamType = 0x000a
	ParamServerInformation ParamType = 0x000b
	ParamOperationError    ParamType = 0x000c
	ParamCookie            ParamType = 0x000d
	ParamPEIdentifier      ParamType = 0x000e
	ParamPEChecksum        ParamType = 0x000f
	ParamHandleResolution  ParamType = 0x803f
)

// Action is what a receiver does with a parameter whose type it does not
// know (RFC 5354 section 2.1): the top two bits of the type.
type Action uint8

const (
	// ActionStop: stop processing the message, discard it.
	ActionStop Action = 0
	// ActionStopReport: stop, discard, and report the parameter in an
	// Unrecognized Parameter error cause.
	ActionStopReport Action = 1
	// ActionSkip: skip the parameter and go on.
	ActionSkip Action = 2
	// ActionSkipReport: skip, go on, and report the parameter.
	ActionSkipReport Action = 3
)

// String returns the action's name, e.g. "skip-and-report".
func (a Action) String() string {
	return [...]string{"stop", "stop-and-report", "skip", "skip-and-report"}[a&3]
}

// Action returns the action bits of t.
func (t ParamType) Action() Action { return Action(t >> 14) }

// Code returns t without its action bits.
func (t ParamType) Code() ParamType { return t & 0x3fff }

// Known reports whether this package decodes parameters of type t (its
// action bits are ignored).
func (t ParamType) Known() bool {
	c := t.Code()
	return (c >= ParamIPv4Address && c <= ParamPEChecksum) || c == ParamHandleResolution.Code()
}

// IsTransport reports whether t is one of the five transport parameters.
func (t ParamType) IsTransport() bool {
	c := t.Code()
	return c == ParamDCCPTransport || (c >= ParamSCTPTransport && c <= ParamUDPLiteTransport)
}

var paramNames = [...]string{
	ParamIPv4Address:       "IPv4Address",
	ParamIPv6Address:       "IPv6Address",
	ParamDCCPTransport:     "DCCPTransport",
	ParamSCTPTransport:     "SCTPTransport",
	ParamTCPTransport:      "TCPTransport",
	ParamUDPTransport:      "UDPTransport",
	ParamUDPLiteTransport:  "UDPLiteTransport",
	ParamPolicy:            "Policy",
	ParamPoolHandle:        "PoolHandle",
	ParamPoolElement:       "PoolElement",
	ParamServerInformation: "ServerInformation",
	ParamOperationError:    "OperationError",
	ParamCookie:            "Cookie",
	ParamPEIdentifier:      "PEIdentifier",
	ParamPEChecksum:        "PEChecksum",
}

// String returns the parameter's name, e.g. "PoolHandle", or its code.
// ParamASAPEndpoint is rspxdp's private parameter, nested in a Server
// Information after the ENRP transport, that carries the registrar's ASAP
// endpoint (package msg writes it). Its top bits 10 tell a receiver that
// does not know it (rsplib) to skip it silently.
const ParamASAPEndpoint ParamType = 0xbf41

func (t ParamType) String() string {
	c := t.Code()
	switch {
	case t == ParamASAPEndpoint:
		return "ASAPEndpoint"
	case c == ParamHandleResolution.Code():
		return "HandleResolution"
	case t.Known():
		return paramNames[c]
	}
	return fmt.Sprintf("Param(%#04x)", uint16(t))
}

// TransportUse says what a PE's transport address is for (RFC 5354
// section 3.3): data only, or data plus ASAP control channel.
type TransportUse uint16

const (
	// UseDataOnly: the address carries application data only.
	UseDataOnly TransportUse = 0
	// UseDataPlusControl: the address also carries ASAP control traffic.
	UseDataPlusControl TransportUse = 1
)

// UpdateAction is the action of an ENRP Handle Update.
type UpdateAction uint16

const (
	// UpdateAddPE adds or refreshes the PE.
	UpdateAddPE UpdateAction = 0
	// UpdateDelPE removes the PE.
	UpdateDelPE UpdateAction = 1
)

// CauseCode is the code of an error cause in an Operation Error parameter
// (RFC 5352 section 5.4 / RFC 5354 section 3.10).
type CauseCode uint16

// Error cause codes.
const (
	CauseUnrecognizedParameter   CauseCode = 0x1
	CauseUnrecognizedMessage     CauseCode = 0x2
	CauseInvalidValues           CauseCode = 0x3
	CauseNonUniquePEIdentifier   CauseCode = 0x4
	CauseInconsistentPolicy      CauseCode = 0x5
	CauseLackOfResources         CauseCode = 0x6
	CauseInconsistentTransport   CauseCode = 0x7
	CauseInconsistentDataControl CauseCode = 0x8
	CauseUnknownPoolHandle       CauseCode = 0x9
	CauseRejectedSecurity        CauseCode = 0xa
)

var causeNames = [...]string{
	CauseUnrecognizedParameter:   "UnrecognizedParameter",
	CauseUnrecognizedMessage:     "UnrecognizedMessage",
	CauseInvalidValues:           "InvalidValues",
	CauseNonUniquePEIdentifier:   "NonUniquePEIdentifier",
	CauseInconsistentPolicy:      "InconsistentPolicy",
	CauseLackOfResources:         "LackOfResources",
	CauseInconsistentTransport:   "InconsistentTransport",
	CauseInconsistentDataControl: "InconsistentDataControl",
	CauseUnknownPoolHandle:       "UnknownPoolHandle",
	CauseRejectedSecurity:        "RejectedSecurity",
}

// String returns the cause's name, e.g. "UnknownPoolHandle", or its code.
func (c CauseCode) String() string {
	if c >= 1 && int(c) < len(causeNames) {
		return causeNames[c]
	}
	return fmt.Sprintf("Cause(%#x)", uint16(c))
}

// NestedParam reports whether the cause information of c is a parameter
// (the offending or unrecognized one).
func (c CauseCode) NestedParam() bool {
	switch c {
	case CauseUnrecognizedParameter, CauseInvalidValues, CauseInconsistentPolicy, CauseInconsistentTransport:
		return true
	}
	return false
}

// NestedMessage reports whether the cause information of c is a message
// (the unrecognized one).
func (c CauseCode) NestedMessage() bool { return c == CauseUnrecognizedMessage }
