package wire

import (
	"encoding/binary"
	"errors"
)

var (
	errTooLong    = errors.New("longer than a 16-bit length allows")
	errAddrFamily = errors.New("address does not match the parameter type")
	errNotTransp  = errors.New("not a transport parameter type")
	errBadMessage = errors.New("unknown protocol or message type")
)

// MarshalBinary encodes m.
func (m *Message) MarshalBinary() ([]byte, error) { return m.AppendBinary(nil) }

// AppendBinary appends the encoding of m to b. With a b of enough capacity
// it does not allocate.
func (m *Message) AppendBinary(b []byte) ([]byte, error) {
	if !m.Protocol.Known(m.Type) {
		return b, &EncodeError{Field: "header.type", Err: errBadMessage}
	}
	start := len(b)
	b = append(b, byte(m.Type), byte(m.Flags), 0, 0)
	if m.Protocol == ENRP {
		b = binary.BigEndian.AppendUint32(b, m.SenderID)
		b = binary.BigEndian.AppendUint32(b, m.ReceiverID)
	}
	switch {
	case m.hasTarget():
		b = binary.BigEndian.AppendUint32(b, m.TargetID)
	case m.hasUpdate():
		b = binary.BigEndian.AppendUint16(b, uint16(m.Action))
		b = binary.BigEndian.AppendUint16(b, m.Reserved)
	case m.hasServerID():
		b = binary.BigEndian.AppendUint32(b, m.ServerID)
	}
	for i := range m.Params {
		var err error
		if b, err = appendParam(b, &m.Params[i]); err != nil {
			return b[:start], err
		}
	}
	n := len(b) - start
	if n > 0xffff {
		return b[:start], &EncodeError{Field: "header.length", Err: errTooLong}
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(n))
	return b, nil
}

// AppendParam appends the encoding of one parameter, padding included.
func AppendParam(b []byte, p *Param) ([]byte, error) { return appendParam(b, p) }

// beginTLV appends a TLV header with a zero length and returns where it is.
func beginTLV(b []byte, t uint16) ([]byte, int) {
	at := len(b)
	return append(b, byte(t>>8), byte(t), 0, 0), at
}

// endTLV fills in the length of the TLV started at at and pads it.
func endTLV(b []byte, at int, t uint16, field string) ([]byte, error) {
	n := len(b) - at
	if n > 0xffff {
		return b, &EncodeError{Field: field + ".length", Err: errTooLong}
	}
	binary.BigEndian.PutUint16(b[at:], t)
	binary.BigEndian.PutUint16(b[at+2:], uint16(n))
	for (len(b)-at)%4 != 0 {
		b = append(b, 0)
	}
	return b, nil
}

func appendParam(b []byte, p *Param) ([]byte, error) {
	t := p.Type
	b, at := beginTLV(b, uint16(t))
	var err error
	switch t.Code() {
	case ParamIPv4Address:
		if !p.Addr.Is4() {
			return b, &EncodeError{Field: t.String(), Err: errAddrFamily}
		}
		a := p.Addr.As4()
		b = append(b, a[:]...)
	case ParamIPv6Address:
		if !p.Addr.Is6() {
			return b, &EncodeError{Field: t.String(), Err: errAddrFamily}
		}
		a := p.Addr.As16()
		b = append(b, a[:]...)
	case ParamDCCPTransport, ParamSCTPTransport, ParamTCPTransport, ParamUDPTransport, ParamUDPLiteTransport:
		tr := p.Transport
		tr.Kind = t
		b, err = appendTransportValue(b, &tr)
	case ParamPolicy:
		b = appendPolicyValue(b, &p.Policy)
	case ParamPoolHandle:
		b = append(b, p.PoolHandle...)
	case ParamPoolElement:
		b, err = appendPEValue(b, &p.PoolElement)
	case ParamServerInformation:
		s := &p.Server
		b = binary.BigEndian.AppendUint32(b, s.ID)
		if s.Transport.Kind != 0 {
			b, err = appendTransport(b, &s.Transport)
		}
		if err == nil {
			b, err = appendRaw(b, s.Extra)
		}
	case ParamOperationError:
		for _, c := range p.Causes {
			var cat int
			b, cat = beginTLV(b, uint16(c.Code))
			b = append(b, c.Info...)
			if b, err = endTLV(b, cat, uint16(c.Code), "OperationError.cause"); err != nil {
				break
			}
		}
	case ParamCookie:
		b = append(b, p.Cookie...)
	case ParamPEIdentifier:
		b = binary.BigEndian.AppendUint32(b, p.PEID)
	case ParamPEChecksum:
		b = binary.BigEndian.AppendUint16(b, p.Checksum)
	case ParamHandleResolution.Code():
		b = binary.BigEndian.AppendUint32(b, p.Items)
	default:
		b = append(b, p.Raw...)
	}
	if err != nil {
		return b, err
	}
	return endTLV(b, at, uint16(t), t.String())
}

func appendPolicyValue(b []byte, pol *Policy) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(pol.Type))
	pi, ok := policies(pol.Type)
	if !ok || pol.Opaque != nil {
		return append(b, pol.Opaque...)
	}
	for _, f := range pi.fields {
		b = binary.BigEndian.AppendUint32(b, *pol.field(f))
	}
	return b
}

func appendTransport(b []byte, tr *Transport) ([]byte, error) {
	if !tr.Kind.IsTransport() {
		return b, &EncodeError{Field: "transport.kind", Err: errNotTransp}
	}
	b, at := beginTLV(b, uint16(tr.Kind))
	b, err := appendTransportValue(b, tr)
	if err != nil {
		return b, err
	}
	return endTLV(b, at, uint16(tr.Kind), tr.Kind.String())
}

func appendTransportValue(b []byte, tr *Transport) ([]byte, error) {
	b = binary.BigEndian.AppendUint16(b, tr.Port)
	b = binary.BigEndian.AppendUint16(b, uint16(tr.Use))
	if tr.Kind.Code() == ParamDCCPTransport {
		b = binary.BigEndian.AppendUint32(b, tr.ServiceCode)
	}
	for _, a := range tr.Addrs {
		switch {
		case a.Is4():
			v := a.As4()
			b = binary.BigEndian.AppendUint16(b, uint16(ParamIPv4Address))
			b = binary.BigEndian.AppendUint16(b, 8)
			b = append(b, v[:]...)
		case a.Is6():
			v := a.As16()
			b = binary.BigEndian.AppendUint16(b, uint16(ParamIPv6Address))
			b = binary.BigEndian.AppendUint16(b, 20)
			b = append(b, v[:]...)
		default:
			return b, &EncodeError{Field: tr.Kind.String() + ".addr", Err: errAddrFamily}
		}
	}
	return appendRaw(b, tr.Extra)
}

func appendPEValue(b []byte, pe *PoolElement) ([]byte, error) {
	b = binary.BigEndian.AppendUint32(b, pe.ID)
	b = binary.BigEndian.AppendUint32(b, pe.HomeRegistrar)
	b = binary.BigEndian.AppendUint32(b, pe.Lifetime)
	var err error
	if pe.UserTransport.Kind != 0 {
		if b, err = appendTransport(b, &pe.UserTransport); err != nil {
			return b, err
		}
	}
	if pe.Policy.Type != 0 || pe.Policy.Opaque != nil {
		var at int
		b, at = beginTLV(b, uint16(ParamPolicy))
		b = appendPolicyValue(b, &pe.Policy)
		if b, err = endTLV(b, at, uint16(ParamPolicy), "PoolElement.Policy"); err != nil {
			return b, err
		}
	}
	if pe.ASAPTransport.Kind != 0 {
		if b, err = appendTransport(b, &pe.ASAPTransport); err != nil {
			return b, err
		}
	}
	return appendRaw(b, pe.Extra)
}

func appendRaw(b []byte, ps []RawParam) ([]byte, error) {
	for _, r := range ps {
		var at int
		var err error
		b, at = beginTLV(b, uint16(r.Type))
		b = append(b, r.Value...)
		if b, err = endTLV(b, at, uint16(r.Type), r.Type.String()); err != nil {
			return b, err
		}
	}
	return b, nil
}
