package msg

import (
	"net/netip"

	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/wire"
)

// ParamASAPEndpoint is the private parameter (an rspxdp extension), nested in Server
// Information after the ENRP transport, that carries the registrar's ASAP
// endpoint: the top bits 10 tell receivers that do not know it to skip it
// silently (rsplib skips what follows the transport in a Server
// Information; an extra top-level parameter would make it reject the
// whole Presence). Defined in wire, so decoders name it.
const ParamASAPEndpoint = wire.ParamASAPEndpoint

// asapEndpointParam wraps ap as a ParamASAPEndpoint parameter.
func asapEndpointParam(ap netip.AddrPort, proto selector.Protocol) (wire.RawParam, bool) {
	if !ap.IsValid() {
		return wire.RawParam{}, false
	}
	tp := wire.TransportParam(addrTransport(kindOf(proto), ap))
	c, err := wire.ParamCause(0, &tp)
	if err != nil {
		return wire.RawParam{}, false
	}
	return wire.RawParam{Type: ParamASAPEndpoint, Value: c.Info}, true
}

// asapEndpointOf returns the ASAP endpoint among a Server Information's
// extra parameters, if any.
func asapEndpointOf(extra []wire.RawParam) netip.AddrPort {
	for _, p := range extra {
		if p.Type != ParamASAPEndpoint {
			continue
		}
		var d wire.Decoder
		tp, err := d.DecodeParam(p.Value)
		if err != nil || !tp.Type.IsTransport() {
			return netip.AddrPort{}
		}
		return firstAddrPort(tp.Transport)
	}
	return netip.AddrPort{}
}
