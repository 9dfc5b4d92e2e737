package wire

import "net/netip"

// Param is one TLV parameter of a message. Type says which of the other
// fields carry its value; the rest are zero. A parameter whose type this
// package does not know (and whose action bits say "skip") keeps its value
// bytes in Raw and re-encodes unchanged.
type Param struct {
	// Type is the parameter type as on the wire, action bits included.
	Type ParamType

	Addr        netip.Addr  // ParamIPv4Address, ParamIPv6Address
	Transport   Transport   // the five transport parameters
	Policy      Policy      // ParamPolicy
	PoolHandle  []byte      // ParamPoolHandle
	PoolElement PoolElement // ParamPoolElement
	Server      ServerInfo  // ParamServerInformation
	Causes      []Cause     // ParamOperationError
	Cookie      []byte      // ParamCookie
	PEID        uint32      // ParamPEIdentifier
	Checksum    uint16      // ParamPEChecksum
	Items       uint32      // ParamHandleResolution: PEs wanted per resolution
	Raw         []byte      // unknown parameter types: the value bytes
}

// Transport is a transport parameter: the protocol (one of the five
// transport parameter types), port, use and addresses of an endpoint.
type Transport struct {
	// Kind is ParamSCTPTransport, ParamTCPTransport, ParamUDPTransport,
	// ParamUDPLiteTransport or ParamDCCPTransport (action bits included).
	Kind ParamType
	Port uint16
	// Use is the transport use for SCTP and TCP; for UDP, UDP-Lite and
	// DCCP the same 16 bits are reserved and kept here so that a decoded
	// parameter re-encodes byte for byte.
	Use TransportUse
	// ServiceCode is the DCCP service code (DCCP only).
	ServiceCode uint32
	// Addrs are the endpoint's addresses, each encoded as an IPv4 or IPv6
	// address parameter according to netip.Addr.Is4.
	Addrs []netip.Addr
	// Extra keeps nested parameters other than addresses, skipped but
	// preserved; they are encoded after the addresses.
	Extra []RawParam
}

// PoolElement is a Pool Element parameter (RFC 5354 section 3.7).
type PoolElement struct {
	ID            uint32 // PE identifier
	HomeRegistrar uint32 // home ENRP server identifier (0 if none yet)
	// Lifetime is the registration life in milliseconds, as on the wire.
	Lifetime uint32
	// UserTransport is where pool users reach the PE; absent (only in
	// malformed input) when its Kind is 0.
	UserTransport Transport
	// Policy is the PE's selection policy; absent when Type is 0 and
	// Opaque is nil.
	Policy Policy
	// ASAPTransport is the PE's ASAP endpoint; absent when its Kind is 0.
	ASAPTransport Transport
	// Extra keeps other nested parameters, encoded after the known ones.
	Extra []RawParam
}

// ServerInfo is a Server Information parameter: a registrar's identifier
// and the transport its peers reach it on.
type ServerInfo struct {
	ID uint32
	// Transport is the registrar's ENRP endpoint; absent when its Kind is 0.
	Transport Transport
	Extra     []RawParam
}

// Cause is one error cause of an Operation Error parameter. Info holds the
// cause information unpadded: for the codes where [CauseCode.NestedParam]
// or [CauseCode.NestedMessage] is true it is a parameter or a message,
// which [Decoder.DecodeParam] and [Decoder.Decode] read.
type Cause struct {
	Code CauseCode
	Info []byte
}

// RawParam is a parameter kept as its type and value bytes.
type RawParam struct {
	Type  ParamType
	Value []byte
}

// Parameter constructors, for building messages in code.

// AddrParam returns an IPv4 or IPv6 address parameter for a.
func AddrParam(a netip.Addr) Param {
	if a.Is4() {
		return Param{Type: ParamIPv4Address, Addr: a}
	}
	return Param{Type: ParamIPv6Address, Addr: a}
}

// TransportParam returns a transport parameter of kind t.Kind.
func TransportParam(t Transport) Param { return Param{Type: t.Kind, Transport: t} }

// PolicyParam returns a Pool Member Selection Policy parameter.
func PolicyParam(p Policy) Param { return Param{Type: ParamPolicy, Policy: p} }

// PoolHandleParam returns a Pool Handle parameter.
func PoolHandleParam(h []byte) Param { return Param{Type: ParamPoolHandle, PoolHandle: h} }

// PoolElementParam returns a Pool Element parameter.
func PoolElementParam(pe PoolElement) Param { return Param{Type: ParamPoolElement, PoolElement: pe} }

// ServerInfoParam returns a Server Information parameter.
func ServerInfoParam(s ServerInfo) Param { return Param{Type: ParamServerInformation, Server: s} }

// ErrorParam returns an Operation Error parameter with the given causes.
func ErrorParam(causes ...Cause) Param { return Param{Type: ParamOperationError, Causes: causes} }

// CookieParam returns a Cookie parameter.
func CookieParam(c []byte) Param { return Param{Type: ParamCookie, Cookie: c} }

// PEIDParam returns a PE Identifier parameter.
func PEIDParam(id uint32) Param { return Param{Type: ParamPEIdentifier, PEID: id} }

// ChecksumParam returns a PE Checksum parameter.
func ChecksumParam(sum uint16) Param { return Param{Type: ParamPEChecksum, Checksum: sum} }

// HandleResolutionParam returns rsplib's Handle Resolution option asking
// for up to items PEs.
func HandleResolutionParam(items uint32) Param {
	return Param{Type: ParamHandleResolution, Items: items}
}

// reset zeroes p for reuse by the decoder, keeping the capacity of its
// slices so that decoding into a reused message does not allocate.
func (p *Param) reset() {
	ph, ck, raw, causes := p.PoolHandle[:0], p.Cookie[:0], p.Raw[:0], p.Causes[:0]
	tr := p.Transport.keep()
	ut, at, pex := p.PoolElement.UserTransport.keep(), p.PoolElement.ASAPTransport.keep(), p.PoolElement.Extra[:0]
	st, sx := p.Server.Transport.keep(), p.Server.Extra[:0]
	*p = Param{}
	p.PoolHandle, p.Cookie, p.Raw, p.Causes = ph, ck, raw, causes
	p.Transport = tr
	p.PoolElement.UserTransport, p.PoolElement.ASAPTransport, p.PoolElement.Extra = ut, at, pex
	p.Server.Transport, p.Server.Extra = st, sx
}

// keep returns an empty Transport holding t's slices, truncated.
func (t *Transport) keep() Transport {
	return Transport{Addrs: t.Addrs[:0], Extra: t.Extra[:0]}
}
