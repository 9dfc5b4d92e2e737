package msg

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
	"github.com/rspxdp/rspxdp/wire"
)

// The codec maps the core's typed messages to wire.Message and back. It is
// the only place that knows which parameters each message carries.

var errMissing = errors.New("missing parameter")

// Encode returns the wire form of m.
func Encode(m Message) ([]byte, error) {
	var e Encoder
	return e.Encode(m)
}

// Encoder encodes messages reusing its scratch storage; it is not safe for
// concurrent use.
type Encoder struct {
	w     wire.Message
	buf   []byte
	addrs []netip.Addr // backs the wire form's one-address transports
}

// Encode returns the wire form of m in a new slice of exactly its size.
func (e *Encoder) Encode(m Message) ([]byte, error) {
	e.addrs = e.addrs[:0]
	if err := toWireInto(m, &e.w, &e.addrs); err != nil {
		return nil, err
	}
	b, err := e.w.AppendBinary(e.buf[:0])
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.msgName(), err)
	}
	e.buf = b
	return append([]byte(nil), b...), nil
}

// Decode parses one ASAP or ENRP message into the core's types.
func Decode(p wire.Protocol, b []byte) (Message, error) {
	var w wire.Message
	if err := (&wire.Decoder{}).Decode(p, b, &w); err != nil {
		return nil, err
	}
	return FromWire(&w)
}

func handleParam(h string) wire.Param { return wire.PoolHandleParam([]byte(h)) }

func causeParam(c Cause) wire.Param {
	return wire.ErrorParam(wire.Cause{Code: wire.CauseCode(c)})
}

func hdr(t wire.Type, h Header) wire.Message {
	return wire.Message{Protocol: wire.ENRP, Type: t, SenderID: h.Sender, ReceiverID: h.Receiver}
}

func boolFlag(b bool, f wire.Flags) wire.Flags {
	if b {
		return f
	}
	return 0
}

// ToWire converts a core message to a wire.Message. Address slices of
// pool elements are shared with m, not copied.
func ToWire(m Message) (*wire.Message, error) {
	var w wire.Message
	if err := toWireInto(m, &w, nil); err != nil {
		return nil, err
	}
	return &w, nil
}

// toWireInto fills *dst with m, reusing dst's parameter storage: a Param is
// a large struct, and a fresh slice per message dominated the allocation
// of the registrar's hot path.
//
// arena, when not nil, backs the one-address transports of the pool
// elements of a resolution answer, so encoding one allocates none; the
// result is then valid only until arena is reused.
func toWireInto(m Message, dst *wire.Message, arena *[]netip.Addr) error {
	params := dst.Params[:0]
	clear(dst.Params)
	var w wire.Message
	direct := false // w.Params already built in the reused storage
	switch m := m.(type) {
	case Registration:
		w = wire.Message{Protocol: wire.ASAP, Type: wire.ASAPRegistration,
			Params: []wire.Param{handleParam(m.Handle), wire.PoolElementParam(peToWire(m.PE))}}
	case RegistrationResponse:
		w = wire.Message{Protocol: wire.ASAP, Type: wire.ASAPRegistrationResponse, Flags: boolFlag(m.Reject, wire.FlagReject),
			Params: append(make([]wire.Param, 0, 3), handleParam(m.Handle), wire.PEIDParam(m.PEID))}
		if m.Reject {
			w.Params = append(w.Params, wire.ErrorParam(wire.Cause{Code: wire.CauseCode(m.Cause), Info: m.CauseInfo}))
		}
	case Deregistration:
		w = wire.Message{Protocol: wire.ASAP, Type: wire.ASAPDeregistration,
			Params: []wire.Param{handleParam(m.Handle), wire.PEIDParam(m.PEID)}}
	case DeregistrationResponse:
		w = wire.Message{Protocol: wire.ASAP, Type: wire.ASAPDeregistrationResponse, Flags: boolFlag(m.Reject, wire.FlagReject),
			Params: []wire.Param{handleParam(m.Handle), wire.PEIDParam(m.PEID)}}
		if m.Reject {
			w.Params = append(w.Params, causeParam(m.Cause))
		}
	case HandleResolution:
		direct = true
		w = wire.Message{Protocol: wire.ASAP, Type: wire.ASAPHandleResolution, Params: append(params, handleParam(m.Handle))}
		if m.MaxItems != 0 {
			w.Params = append(w.Params, wire.HandleResolutionParam(m.MaxItems))
		}
	case HandleResolutionResponse:
		// The registrar's most frequent answer: built straight into the
		// reused parameter storage (a Param is large; a fresh slice per
		// response was half of the resolution path's allocation).
		direct = true
		w = wire.Message{Protocol: wire.ASAP, Type: wire.ASAPHandleResolutionResponse,
			Params: append(params, handleParam(m.Handle))}
		if m.Cause != 0 {
			w.Flags = wire.FlagReject
			w.Params = append(w.Params, causeParam(m.Cause))
			break
		}
		if m.PolicyType != 0 {
			w.Params = append(w.Params, wire.PolicyParam(wire.Policy{Type: wire.PolicyType(m.PolicyType)}))
		}
		for _, pe := range m.PEs {
			w.Params = append(w.Params, wire.PoolElementParam(peToWireIn(pe, arena)))
		}
	case EndpointKeepAlive:
		w = wire.Message{Protocol: wire.ASAP, Type: wire.ASAPEndpointKeepAlive, Flags: boolFlag(m.Home, wire.FlagHome),
			ServerID: m.ServerID, Params: []wire.Param{handleParam(m.Handle), wire.PEIDParam(m.PEID)}}
	case EndpointKeepAliveAck:
		w = wire.Message{Protocol: wire.ASAP, Type: wire.ASAPEndpointKeepAliveAck,
			Params: []wire.Param{handleParam(m.Handle), wire.PEIDParam(m.PEID)}}
	case EndpointUnreachable:
		w = wire.Message{Protocol: wire.ASAP, Type: wire.ASAPEndpointUnreachable,
			Params: []wire.Param{handleParam(m.Handle), wire.PEIDParam(m.PEID)}}
	case ServerAnnounce:
		w = wire.Message{Protocol: wire.ASAP, Type: wire.ASAPServerAnnounce, ServerID: m.ServerID}
		for _, a := range m.ASAP {
			w.Params = append(w.Params, wire.TransportParam(addrTransport(kindOf(m.Protocol), a)))
		}
	case Presence:
		w = hdr(wire.ENRPPresence, m.Header)
		w.Flags = boolFlag(m.Reply, wire.FlagReplyRequired) | boolFlag(m.Leaving, wire.FlagLeaving)
		w.Params = []wire.Param{wire.ChecksumParam(m.Checksum), wire.ServerInfoParam(serverToWire(m.Info))}
	case HandleTableRequest:
		w = hdr(wire.ENRPHandleTableRequest, m.Header)
		w.Flags = boolFlag(m.OwnOnly, wire.FlagOwnChildrenOnly)
	case HandleTableResponse:
		w = hdr(wire.ENRPHandleTableResponse, m.Header)
		w.Flags = boolFlag(m.Reject, wire.FlagReject) | boolFlag(m.More, wire.FlagMoreToSend)
		n := 0
		for _, p := range m.Pools {
			n += 1 + len(p.PEs)
		}
		w.Params = make([]wire.Param, 0, n)
		for _, p := range m.Pools {
			w.Params = append(w.Params, handleParam(p.Handle))
			for _, pe := range p.PEs {
				w.Params = append(w.Params, enrpPE(pe))
			}
		}
	case HandleUpdate:
		w = hdr(wire.ENRPHandleUpdate, m.Header)
		w.Action = wire.UpdateAction(m.Action)
		w.Flags = boolFlag(m.Drain && m.Action == DelPE, wire.FlagDrain)
		w.Params = []wire.Param{handleParam(m.Handle), enrpPE(m.PE)}
	case ListRequest:
		w = hdr(wire.ENRPListRequest, m.Header)
	case ListResponse:
		w = hdr(wire.ENRPListResponse, m.Header)
		w.Flags = boolFlag(m.Reject, wire.FlagReject)
		for _, s := range m.Servers {
			w.Params = append(w.Params, wire.ServerInfoParam(serverToWire(s)))
		}
	case InitTakeover:
		w = hdr(wire.ENRPInitTakeover, m.Header)
		w.TargetID = m.Target
	case InitTakeoverAck:
		w = hdr(wire.ENRPInitTakeoverAck, m.Header)
		w.TargetID = m.Target
	case TakeoverServer:
		w = hdr(wire.ENRPTakeoverServer, m.Header)
		w.TargetID = m.Target
	case BusinessCard:
		w = wire.Message{Protocol: wire.ASAP, Type: wire.ASAPBusinessCard, Params: []wire.Param{handleParam(m.Handle)}}
		if len(m.PEs) > 0 {
			w.Params = append(w.Params, wire.PolicyParam(policyToWire(m.PEs[0].Policy)))
		}
		for _, pe := range m.PEs {
			w.Params = append(w.Params, wire.PoolElementParam(peToWire(pe)))
		}
	case ErrorMessage:
		w = errorToWire(m)
	default:
		return fmt.Errorf("encode %T: not a registrar message", m)
	}
	if !direct {
		// Move the parameters into the reused storage.
		params = append(params, w.Params...)
		w.Params = params
	}
	*dst = w
	return nil
}

// FromWire converts a decoded wire.Message to a core message.
func FromWire(w *wire.Message) (Message, error) {
	handle := string(w.PoolHandle())
	peid, hasID := w.PEID()
	need := func(ok bool, what string) error {
		if !ok {
			return fmt.Errorf("decode %s: %s: %w", w.TypeName(), what, errMissing)
		}
		return nil
	}
	var cause Cause
	var causeInfo []byte
	if cs := w.Causes(); len(cs) > 0 {
		cause = Cause(cs[0].Code)
		if len(cs[0].Info) > 0 {
			causeInfo = append([]byte(nil), cs[0].Info...)
		}
	}
	h := Header{Sender: w.SenderID, Receiver: w.ReceiverID}
	carriesPEs := w.Protocol == wire.ASAP && (w.Type == wire.ASAPRegistration || w.Type == wire.ASAPHandleResolutionResponse) ||
		w.Protocol == wire.ENRP && (w.Type == wire.ENRPHandleUpdate || w.Type == wire.ENRPHandleTableResponse)
	if carriesPEs {
		for _, pl := range w.Pools() {
			for _, pe := range pl.Elements {
				if err := checkPE(pe); err != nil {
					return nil, fmt.Errorf("decode %s: %w", w.TypeName(), err)
				}
			}
		}
	}
	if w.Protocol == wire.ASAP {
		switch w.Type {
		case wire.ASAPRegistration:
			pe := w.PoolElement()
			if err := need(pe != nil, "pool element"); err != nil {
				return nil, err
			}
			return Registration{Handle: handle, PE: peFromWire(pe)}, nil
		case wire.ASAPRegistrationResponse:
			return RegistrationResponse{Handle: handle, PEID: peid, Reject: w.Flags&wire.FlagReject != 0, Cause: cause, CauseInfo: causeInfo}, nil
		case wire.ASAPDeregistration:
			if err := need(hasID, "PE identifier"); err != nil {
				return nil, err
			}
			return Deregistration{Handle: handle, PEID: peid}, nil
		case wire.ASAPDeregistrationResponse:
			return DeregistrationResponse{Handle: handle, PEID: peid, Reject: w.Flags&wire.FlagReject != 0, Cause: cause}, nil
		case wire.ASAPHandleResolution:
			var items uint32
			if p := w.Param(wire.ParamHandleResolution); p != nil {
				items = p.Items
			}
			return HandleResolution{Handle: handle, MaxItems: items}, nil
		case wire.ASAPHandleResolutionResponse:
			r := HandleResolutionResponse{Handle: handle, Cause: cause}
			if p := w.Param(wire.ParamPolicy); p != nil {
				r.PolicyType = uint32(p.Policy.Type)
			}
			for _, pl := range w.Pools() {
				for _, pe := range pl.Elements {
					r.PEs = append(r.PEs, peFromWire(pe))
				}
			}
			return r, nil
		case wire.ASAPEndpointKeepAlive:
			return EndpointKeepAlive{ServerID: w.ServerID, Handle: handle, PEID: peid, Home: w.Flags&wire.FlagHome != 0}, nil
		case wire.ASAPEndpointKeepAliveAck:
			return EndpointKeepAliveAck{Handle: handle, PEID: peid}, nil
		case wire.ASAPEndpointUnreachable:
			return EndpointUnreachable{Handle: handle, PEID: peid}, nil
		case wire.ASAPBusinessCard:
			c := BusinessCard{Handle: handle}
			for _, pl := range w.Pools() {
				for _, pe := range pl.Elements {
					if checkPE(pe) == nil {
						c.PEs = append(c.PEs, peFromWire(pe))
					}
				}
			}
			return c, nil
		case wire.ASAPServerAnnounce:
			a := ServerAnnounce{ServerID: w.ServerID}
			for _, p := range w.Params {
				if p.Type.IsTransport() {
					if ap := firstAddrPort(p.Transport); ap.IsValid() {
						a.ASAP = append(a.ASAP, ap)
						a.Protocol = protocolOf(p.Transport.Kind)
					}
				}
			}
			return a, nil
		}
		if w.Type == wire.ASAPError {
			return errorFromWire(w), nil
		}
		return nil, fmt.Errorf("decode ASAP %s: %w", w.TypeName(), ErrNotHandled)
	}
	switch w.Type {
	case wire.ENRPPresence:
		p := Presence{Header: h, Reply: w.Flags&wire.FlagReplyRequired != 0, Leaving: w.Flags&wire.FlagLeaving != 0}
		if c := w.Param(wire.ParamPEChecksum); c != nil {
			p.Checksum = c.Checksum
		}
		if s := w.Param(wire.ParamServerInformation); s != nil {
			p.Info = serverFromWire(&s.Server)
		}
		return p, nil
	case wire.ENRPHandleTableRequest:
		return HandleTableRequest{Header: h, OwnOnly: w.Flags&wire.FlagOwnChildrenOnly != 0}, nil
	case wire.ENRPHandleTableResponse:
		r := HandleTableResponse{Header: h, More: w.Flags&wire.FlagMoreToSend != 0, Reject: w.Flags&wire.FlagReject != 0}
		for _, pl := range w.Pools() {
			p := Pool{Handle: string(pl.Handle)}
			for _, pe := range pl.Elements {
				p.PEs = append(p.PEs, ownershipFromWire(peFromWire(pe), pe))
			}
			r.Pools = append(r.Pools, p)
		}
		return r, nil
	case wire.ENRPHandleUpdate:
		pe := w.PoolElement()
		if err := need(pe != nil, "pool element"); err != nil {
			return nil, err
		}
		return HandleUpdate{Header: h, Action: UpdateAction(w.Action), Handle: handle, PE: ownershipFromWire(peFromWire(pe), pe),
			Drain: w.Flags&wire.FlagDrain != 0 && UpdateAction(w.Action) == DelPE}, nil
	case wire.ENRPListRequest:
		return ListRequest{Header: h}, nil
	case wire.ENRPListResponse:
		r := ListResponse{Header: h, Reject: w.Flags&wire.FlagReject != 0}
		for i := range w.Params {
			if w.Params[i].Type.Code() == wire.ParamServerInformation {
				r.Servers = append(r.Servers, serverFromWire(&w.Params[i].Server))
			}
		}
		return r, nil
	case wire.ENRPInitTakeover:
		return InitTakeover{Header: h, Target: w.TargetID}, nil
	case wire.ENRPInitTakeoverAck:
		return InitTakeoverAck{Header: h, Target: w.TargetID}, nil
	case wire.ENRPTakeoverServer:
		return TakeoverServer{Header: h, Target: w.TargetID}, nil
	}
	if w.Type == wire.ENRPError {
		return errorFromWire(w), nil
	}
	return nil, fmt.Errorf("decode ENRP %s: %w", w.TypeName(), ErrNotHandled)
}

func addrTransport(kind wire.ParamType, a netip.AddrPort) wire.Transport {
	return wire.Transport{Kind: kind, Port: a.Port(), Addrs: []netip.Addr{a.Addr()}}
}

func firstAddrPort(t wire.Transport) netip.AddrPort {
	if len(t.Addrs) == 0 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(t.Addrs[0], t.Port)
}

func serverToWire(s ServerInfo) wire.ServerInfo {
	w := wire.ServerInfo{ID: s.ID}
	if s.ENRP.IsValid() {
		w.Transport = addrTransport(kindOf(s.Protocol), s.ENRP)
	}
	if ap, ok := asapEndpointParam(s.ASAP, s.Protocol); ok {
		w.Extra = []wire.RawParam{ap} // unreachable.go
	}
	return w
}

func serverFromWire(w *wire.ServerInfo) ServerInfo {
	s := ServerInfo{ID: w.ID}
	if w.Transport.Kind != 0 {
		s.ENRP = firstAddrPort(w.Transport)
		s.Protocol = protocolOf(w.Transport.Kind)
	}
	s.ASAP = asapEndpointOf(w.Extra)
	return s
}

// kindOf is the transport parameter type for an endpoint of a registrar
// or PE speaking ASAP/ENRP over p; 0 (unset) stays TCP, the transport
// that was the only one before SCTP.
func kindOf(p selector.Protocol) wire.ParamType {
	if k, ok := protoToKind[p]; ok {
		return k
	}
	return wire.ParamTCPTransport
}

// protocolOf is the inverse of kindOf (0 for a kind it does not know).
func protocolOf(k wire.ParamType) selector.Protocol {
	for p, kk := range protoToKind {
		if kk.Code() == k.Code() {
			return p
		}
	}
	return 0
}

var protoToKind = map[selector.Protocol]wire.ParamType{
	selector.TCP:  wire.ParamTCPTransport,
	selector.UDP:  wire.ParamUDPTransport,
	selector.SCTP: wire.ParamSCTPTransport,
	protoDCCP:     wire.ParamDCCPTransport,
	protoUDPLite:  wire.ParamUDPLiteTransport,
}

// IP protocol numbers of the transports selector has no constant for.
const (
	protoDCCP    selector.Protocol = 33
	protoUDPLite selector.Protocol = 136
)

func peToWire(pe PoolElement) wire.PoolElement { return peToWireIn(pe, nil) }

// peToWireIn is peToWire taking the ASAP transport's address slice from
// arena when given (see toWireInto).
func peToWireIn(pe PoolElement, arena *[]netip.Addr) wire.PoolElement {
	// An unknown protocol leaves the user transport absent (Kind 0), as it
	// was received; the registrar refuses such PEs with Invalid Values.
	kind := protoToKind[pe.Transport.Protocol]
	w := wire.PoolElement{
		ID:            pe.ID,
		HomeRegistrar: pe.Home,
		Lifetime:      uint32(pe.Lifetime / time.Millisecond),
		UserTransport: wire.Transport{
			Kind:  kind,
			Port:  pe.Transport.Port,
			Use:   wire.TransportUse(pe.Transport.Use),
			Addrs: pe.Transport.Addrs, // read only: the wire form is encoded, never edited
		},
		Policy: policyToWire(pe.Policy),
	}
	if pe.ASAP.IsValid() {
		if arena == nil {
			w.ASAPTransport = addrTransport(kindOf(pe.ASAPProtocol), pe.ASAP)
		} else {
			*arena = append(*arena, pe.ASAP.Addr())
			n := len(*arena)
			w.ASAPTransport = wire.Transport{Kind: kindOf(pe.ASAPProtocol), Port: pe.ASAP.Port(), Addrs: (*arena)[n-1 : n : n]}
		}
	}
	return w
}

// checkPE refuses pool elements the registrar cannot store or re-encode
// faithfully: without a user transport or without a policy type.
func checkPE(w *wire.PoolElement) error {
	switch {
	case w.UserTransport.Kind == 0:
		return fmt.Errorf("pool element %#x: user transport: %w", w.ID, errMissing)
	case w.Policy.Type == 0:
		return fmt.Errorf("pool element %#x: policy: %w", w.ID, errMissing)
	}
	return nil
}

func peFromWire(w *wire.PoolElement) PoolElement {
	pe := PoolElement{
		ID:       w.ID,
		Home:     w.HomeRegistrar,
		Lifetime: time.Duration(w.Lifetime) * time.Millisecond,
		Transport: selector.Transport{
			Port:  w.UserTransport.Port,
			Use:   selector.TransportUse(w.UserTransport.Use),
			Addrs: append([]netip.Addr(nil), w.UserTransport.Addrs...),
		},
		Policy: policyFromWire(w.Policy),
	}
	pe.Transport.Protocol = protocolOf(w.UserTransport.Kind)
	// An ASAP transport without an address names no endpoint to reach
	// the PE at: it is dropped whole, so re-encoding stays faithful.
	if a := firstAddrPort(w.ASAPTransport); w.ASAPTransport.Kind != 0 && a.IsValid() {
		pe.ASAP = a
		pe.ASAPProtocol = protocolOf(w.ASAPTransport.Kind)
	}
	return pe
}

func policyToWire(s policy.Settings) wire.Policy {
	w := wire.Policy{
		Type:            wire.PolicyType(s.Type),
		Weight:          s.Weight,
		Load:            s.Load,
		LoadDegradation: s.LoadDegradation,
		LoadDPF:         s.LoadDPF,
		WeightDPF:       s.WeightDPF,
		Distance:        s.Distance,
	}
	if s.Type == policy.TypePriority {
		w.Priority, w.Weight = s.Weight, 0
	}
	return w
}

func policyFromWire(w wire.Policy) policy.Settings {
	s := policy.Settings{
		Type:            policy.Type(w.Type),
		Weight:          w.Weight,
		Load:            w.Load,
		LoadDegradation: w.LoadDegradation,
		LoadDPF:         w.LoadDPF,
		WeightDPF:       w.WeightDPF,
		Distance:        w.Distance,
	}
	if s.Type == policy.TypePriority {
		s.Weight = w.Priority
	}
	return s
}

// OffendingParam returns, in wire form, the parameter of Registration r
// that a rejection with cause c is about, as the cause-specific information
// of that cause (RFC 5354, 3.3.10): the pool handle or the pool element for
// Invalid Values, the pool member selection policy for Inconsistent Pooling
// Policy, the user transport for Inconsistent Transport Type; nil for
// causes that carry none. badHandle says the pool handle, not the pool
// element, has the invalid value.
func OffendingParam(r Registration, c Cause, badHandle bool) []byte {
	var p wire.Param
	switch c {
	case CauseInvalidValues:
		if badHandle {
			p = handleParam(r.Handle)
		} else {
			p = wire.PoolElementParam(peToWire(r.PE))
		}
	case CauseInconsistentPolicy:
		p = wire.PolicyParam(policyToWire(r.PE.Policy))
	case CauseInconsistentTransport:
		p = wire.TransportParam(peToWire(r.PE).UserTransport)
		if p.Type == 0 {
			p = wire.PoolElementParam(peToWire(r.PE))
		}
	default:
		return nil
	}
	pc, err := wire.ParamCause(wire.CauseCode(c), &p)
	if err != nil {
		return nil
	}
	return pc.Info
}
