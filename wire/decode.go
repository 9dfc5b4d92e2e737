package wire

import (
	"encoding/binary"
	"net/netip"
)

// Default limits of a zero [Decoder].
const (
	// DefaultMaxMessageSize is the largest message a zero Decoder accepts:
	// the largest length the 16-bit header field can hold.
	DefaultMaxMessageSize = 65535
	// DefaultMaxDepth bounds parameter nesting. Real messages nest three
	// deep (Pool Element > transport > address); error causes that carry
	// whole messages add a few levels.
	DefaultMaxDepth = 8
)

// headerLen is the size of the common message header.
const headerLen = 4

// Decoder decodes messages within configured limits. The zero value uses
// the defaults; a Decoder is safe for concurrent use (it holds only limits).
type Decoder struct {
	// MaxMessageSize bounds the header's length field (0 = default).
	MaxMessageSize int
	// MaxDepth bounds the nesting of parameters (0 = default).
	MaxDepth int
}

func (d *Decoder) maxSize() int {
	if d == nil || d.MaxMessageSize <= 0 || d.MaxMessageSize > DefaultMaxMessageSize {
		return DefaultMaxMessageSize
	}
	return d.MaxMessageSize
}

func (d *Decoder) maxDepth() int {
	if d == nil || d.MaxDepth <= 0 {
		return DefaultMaxDepth
	}
	return d.MaxDepth
}

// MessageLength returns the total length of the message that starts at b,
// read from its common header, for framing a byte stream. It needs the
// four header bytes only.
func MessageLength(b []byte) (int, error) {
	if len(b) < headerLen {
		return 0, &DecodeError{Field: "header", Err: ErrTruncated}
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if n < headerLen {
		return 0, &DecodeError{Field: "header.length", Offset: 2, Err: ErrBadLength}
	}
	return n, nil
}

// Decode decodes one message of a fresh [Message] with a zero [Decoder].
func Decode(p Protocol, b []byte) (*Message, error) {
	m := new(Message)
	if err := new(Decoder).Decode(p, b, m); err != nil {
		return nil, err
	}
	return m, nil
}

// UnmarshalBinary decodes b into m with a zero [Decoder]; m.Protocol must
// say which protocol b is.
func (m *Message) UnmarshalBinary(b []byte) error {
	return new(Decoder).Decode(m.Protocol, b, m)
}

// Decode decodes the message in b, which must hold exactly one message
// (its length is the header's length field), into m. m's storage is reused:
// slices in m from an earlier decode are overwritten, so copy what must
// outlive the next decode. On error m holds a partial message.
func (d *Decoder) Decode(p Protocol, b []byte, m *Message) error {
	return d.decode(p, b, m, 0)
}

// decode decodes a message whose parameters sit at nesting depth+1.
func (d *Decoder) decode(p Protocol, b []byte, m *Message, depth int) error {
	if p != ASAP && p != ENRP {
		return &DecodeError{Field: "protocol", Err: ErrBadValue}
	}
	n, err := MessageLength(b)
	if err != nil {
		return err
	}
	if n > d.maxSize() {
		return &DecodeError{Field: "header.length", Offset: 2, Err: ErrTooLarge}
	}
	if n != len(b) {
		if n > len(b) {
			return &DecodeError{Field: "header.length", Offset: 2, Err: ErrTruncated}
		}
		return &DecodeError{Field: "header.length", Offset: 2, Err: ErrBadLength}
	}
	params := m.Params[:0]
	*m = Message{Protocol: p, Type: Type(b[0]), Flags: Flags(b[1])}
	if !p.Known(m.Type) {
		m.Params = params
		return &DecodeError{Field: "header.type", Offset: 0, Err: ErrUnknownMessage}
	}
	off := headerLen
	need := func(k int, field string) error {
		if len(b)-off < k {
			return &DecodeError{Field: field, Offset: off, Err: ErrTruncated}
		}
		return nil
	}
	if p == ENRP {
		if err := need(8, "sender/receiver ID"); err != nil {
			m.Params = params
			return err
		}
		m.SenderID = binary.BigEndian.Uint32(b[off:])
		m.ReceiverID = binary.BigEndian.Uint32(b[off+4:])
		off += 8
	}
	switch {
	case m.hasTarget():
		if err := need(4, "target ID"); err != nil {
			m.Params = params
			return err
		}
		m.TargetID = binary.BigEndian.Uint32(b[off:])
		off += 4
	case m.hasUpdate():
		if err := need(4, "update action"); err != nil {
			m.Params = params
			return err
		}
		m.Action = UpdateAction(binary.BigEndian.Uint16(b[off:]))
		m.Reserved = binary.BigEndian.Uint16(b[off+2:])
		off += 4
	case m.hasServerID():
		if err := need(4, "server ID"); err != nil {
			m.Params = params
			return err
		}
		m.ServerID = binary.BigEndian.Uint32(b[off:])
		off += 4
	}
	it := tlvIter{b: b, off: off}
	for !it.done() {
		t, v, start, err := it.next("param")
		if err != nil {
			m.Params = params
			return err
		}
		if len(params) < cap(params) {
			params = params[:len(params)+1]
		} else {
			params = append(params, Param{})
		}
		q := &params[len(params)-1]
		q.reset()
		if err := d.decodeParam(p, t, v, start, depth+1, q); err != nil {
			m.Params = params
			return err
		}
	}
	m.Params = params
	return nil
}

// DecodeParam decodes the single parameter (with optional padding) in b,
// e.g. the information of an Unrecognized Parameter error cause.
func (d *Decoder) DecodeParam(b []byte) (Param, error) {
	var p Param
	it := tlvIter{b: b}
	t, v, start, err := it.next("param")
	if err != nil {
		return p, err
	}
	if !it.done() {
		return p, &DecodeError{Field: "param", Offset: it.off, Err: ErrBadLength}
	}
	// The protocol only matters for nested messages in error causes, whose
	// contents are checked but not decoded here.
	err = d.decodeParam(ASAP, t, v, start, 1, &p)
	return p, err
}

// tlvIter walks a list of padded TLVs (parameters or error causes: both
// have a 16-bit type and a 16-bit length that includes the 4-byte header).
type tlvIter struct {
	b   []byte
	off int
}

func (it *tlvIter) done() bool { return it.off >= len(it.b) }

// next returns the type, the value and the value's offset of the next TLV.
// The RFCs pad every TLV, and byte-exact re-encoding needs the padding, so
// padding missing at the end of the buffer is an error.
func (it *tlvIter) next(field string) (ParamType, []byte, int, error) {
	rem := it.b[it.off:]
	if len(rem) < 4 {
		return 0, nil, it.off, &DecodeError{Field: field + ".header", Offset: it.off, Err: ErrTruncated}
	}
	t := ParamType(binary.BigEndian.Uint16(rem))
	l := int(binary.BigEndian.Uint16(rem[2:]))
	if l < 4 {
		return t, nil, it.off, &DecodeError{Field: field + "(" + t.String() + ").length", Offset: it.off + 2, Err: ErrBadLength, Param: t}
	}
	padded := (l + 3) &^ 3
	if padded > len(rem) {
		return t, nil, it.off, &DecodeError{Field: field + "(" + t.String() + ").length", Offset: it.off + 2, Err: ErrTruncated, Param: t}
	}
	start := it.off + 4
	it.off += padded
	return t, rem[4:l], start, nil
}

func lenErr(t ParamType, off int) error {
	return &DecodeError{Field: t.String() + ".length", Offset: off - 2, Err: ErrBadLength, Param: t}
}

func depthErr(t ParamType, off int) error {
	return &DecodeError{Field: t.String(), Offset: off - 4, Err: ErrTooDeep, Param: t}
}

// unknownErr reports an unknown parameter whose action is stop; v is its
// value, which sits right after its 4-byte header in the same buffer.
func unknownErr(t ParamType, v []byte, off int) error {
	return &DecodeError{Field: t.String(), Offset: off - 4, Err: ErrUnknownParam, Param: t,
		Report: t.Action() == ActionStopReport, Bytes: withHeader(t, v)}
}

// withHeader rebuilds a parameter's bytes from its type and value.
func withHeader(t ParamType, v []byte) []byte {
	b := make([]byte, 4, 4+len(v))
	binary.BigEndian.PutUint16(b, uint16(t))
	binary.BigEndian.PutUint16(b[2:], uint16(4+len(v)))
	return append(b, v...)
}

// decodeParam fills q (already reset) from type t and value v found at
// offset off, at nesting depth depth.
func (d *Decoder) decodeParam(proto Protocol, t ParamType, v []byte, off, depth int, q *Param) error {
	if depth > d.maxDepth() {
		return depthErr(t, off)
	}
	q.Type = t
	switch t.Code() {
	case ParamIPv4Address:
		if len(v) != 4 {
			return lenErr(t, off)
		}
		q.Addr = netip.AddrFrom4([4]byte(v))
	case ParamIPv6Address:
		if len(v) != 16 {
			return lenErr(t, off)
		}
		q.Addr = netip.AddrFrom16([16]byte(v))
	case ParamDCCPTransport, ParamSCTPTransport, ParamTCPTransport, ParamUDPTransport, ParamUDPLiteTransport:
		return d.decodeTransport(t, v, off, depth, &q.Transport)
	case ParamPolicy:
		return decodePolicy(t, v, off, &q.Policy)
	case ParamPoolHandle:
		q.PoolHandle = append(q.PoolHandle[:0], v...)
	case ParamPoolElement:
		return d.decodePE(t, v, off, depth, &q.PoolElement)
	case ParamServerInformation:
		return d.decodeServer(t, v, off, depth, &q.Server)
	case ParamOperationError:
		return d.decodeCauses(proto, v, off, depth, q)
	case ParamCookie:
		q.Cookie = append(q.Cookie[:0], v...)
	case ParamPEIdentifier:
		if len(v) != 4 {
			return lenErr(t, off)
		}
		q.PEID = binary.BigEndian.Uint32(v)
	case ParamPEChecksum:
		if len(v) != 2 {
			return lenErr(t, off)
		}
		q.Checksum = binary.BigEndian.Uint16(v)
	case ParamHandleResolution.Code():
		if len(v) != 4 {
			return lenErr(t, off)
		}
		q.Items = binary.BigEndian.Uint32(v)
	default:
		if a := t.Action(); a == ActionStop || a == ActionStopReport {
			return unknownErr(t, v, off)
		}
		q.Raw = append(q.Raw[:0], v...)
	}
	return nil
}

func decodePolicy(t ParamType, v []byte, off int, pol *Policy) error {
	if len(v) < 4 {
		return lenErr(t, off)
	}
	*pol = Policy{Type: PolicyType(binary.BigEndian.Uint32(v))}
	v = v[4:]
	pi, ok := policies(pol.Type)
	if !ok || len(v) != 4*len(pi.fields) {
		pol.Opaque = make([]byte, len(v))
		copy(pol.Opaque, v)
		return nil
	}
	for i, f := range pi.fields {
		*pol.field(f) = binary.BigEndian.Uint32(v[4*i:])
	}
	return nil
}

func (d *Decoder) decodeTransport(t ParamType, v []byte, off, depth int, tr *Transport) error {
	hdr := 4
	if t.Code() == ParamDCCPTransport {
		hdr = 8
	}
	if len(v) < hdr {
		return lenErr(t, off)
	}
	tr.Kind = t
	tr.Port = binary.BigEndian.Uint16(v)
	tr.Use = TransportUse(binary.BigEndian.Uint16(v[2:]))
	if hdr == 8 {
		tr.ServiceCode = binary.BigEndian.Uint32(v[4:])
	}
	it := tlvIter{b: v, off: hdr}
	for !it.done() {
		nt, nv, start, err := it.next("Transport.param")
		if err != nil {
			return rebase(err, off)
		}
		if depth+1 > d.maxDepth() {
			return depthErr(nt, off+start)
		}
		switch nt.Code() {
		case ParamIPv4Address:
			if len(nv) != 4 {
				return lenErr(nt, off+start)
			}
			tr.Addrs = append(tr.Addrs, netip.AddrFrom4([4]byte(nv)))
		case ParamIPv6Address:
			if len(nv) != 16 {
				return lenErr(nt, off+start)
			}
			tr.Addrs = append(tr.Addrs, netip.AddrFrom16([16]byte(nv)))
		default:
			if err := d.extra(&tr.Extra, nt, nv, off+start, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// extra keeps a nested parameter that has no field of its own, after
// checking it is well formed and may be skipped.
func (d *Decoder) extra(dst *[]RawParam, t ParamType, v []byte, off, depth int) error {
	if !t.Known() {
		if a := t.Action(); a == ActionStop || a == ActionStopReport {
			return unknownErr(t, v, off)
		}
	} else if err := d.check(t, v, off, depth); err != nil {
		return err
	}
	*dst = append(*dst, RawParam{Type: t, Value: append([]byte(nil), v...)})
	return nil
}

// check validates a known parameter without keeping it, by decoding it
// into a scratch value.
func (d *Decoder) check(t ParamType, v []byte, off, depth int) error {
	var scratch Param
	return d.decodeParam(ASAP, t, v, off, depth, &scratch)
}

func rebase(err error, off int) error {
	if de, ok := err.(*DecodeError); ok {
		de.Offset += off
	}
	return err
}

func (d *Decoder) decodePE(t ParamType, v []byte, off, depth int, pe *PoolElement) error {
	if len(v) < 12 {
		return lenErr(t, off)
	}
	pe.ID = binary.BigEndian.Uint32(v)
	pe.HomeRegistrar = binary.BigEndian.Uint32(v[4:])
	pe.Lifetime = binary.BigEndian.Uint32(v[8:])
	it := tlvIter{b: v, off: 12}
	var seenPolicy bool
	for !it.done() {
		nt, nv, start, err := it.next("PoolElement.param")
		if err != nil {
			return rebase(err, off)
		}
		if depth+1 > d.maxDepth() {
			return depthErr(nt, off+start)
		}
		switch {
		case nt.IsTransport() && pe.UserTransport.Kind == 0 && !seenPolicy:
			err = d.decodeTransport(nt, nv, off+start, depth+1, &pe.UserTransport)
		case nt.Code() == ParamPolicy && !seenPolicy:
			seenPolicy = true
			err = decodePolicy(nt, nv, off+start, &pe.Policy)
			if err == nil && pe.Policy.Type == 0 && pe.Policy.Opaque == nil {
				// A zero policy type would vanish on re-encoding; keep it.
				pe.Policy.Opaque = []byte{}
			}
		case nt.IsTransport() && pe.ASAPTransport.Kind == 0 && (seenPolicy || pe.UserTransport.Kind != 0):
			// The ASAP transport follows the policy (RFC 5354 3.7); a
			// second transport ahead of the policy is taken for it too,
			// since re-encoding writes it there.
			err = d.decodeTransport(nt, nv, off+start, depth+1, &pe.ASAPTransport)
		default:
			err = d.extra(&pe.Extra, nt, nv, off+start, depth+1)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *Decoder) decodeServer(t ParamType, v []byte, off, depth int, s *ServerInfo) error {
	if len(v) < 4 {
		return lenErr(t, off)
	}
	s.ID = binary.BigEndian.Uint32(v)
	it := tlvIter{b: v, off: 4}
	for !it.done() {
		nt, nv, start, err := it.next("ServerInformation.param")
		if err != nil {
			return rebase(err, off)
		}
		if depth+1 > d.maxDepth() {
			return depthErr(nt, off+start)
		}
		if nt.IsTransport() && s.Transport.Kind == 0 && len(s.Extra) == 0 {
			err = d.decodeTransport(nt, nv, off+start, depth+1, &s.Transport)
		} else {
			err = d.extra(&s.Extra, nt, nv, off+start, depth+1)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *Decoder) decodeCauses(proto Protocol, v []byte, off, depth int, q *Param) error {
	it := tlvIter{b: v}
	causes := q.Causes[:0]
	for !it.done() {
		code, info, start, err := it.next("OperationError.cause")
		if err != nil {
			return rebase(err, off)
		}
		c := CauseCode(code)
		switch {
		case c.NestedParam() && len(info) > 0:
			if err := d.checkNestedParam(proto, info, off+start, depth+1); err != nil {
				return err
			}
		case c.NestedMessage() && len(info) > 0:
			if err := d.checkNestedMessage(proto, info, off+start, depth+1); err != nil {
				return err
			}
		}
		if len(causes) < cap(causes) {
			causes = causes[:len(causes)+1]
		} else {
			causes = append(causes, Cause{})
		}
		cc := &causes[len(causes)-1]
		cc.Code = c
		cc.Info = append(cc.Info[:0], info...)
	}
	q.Causes = causes
	return nil
}

// checkNestedParam validates the parameter carried by an error cause.
// Senders copy the offending parameter, which may itself be unknown or
// malformed, so only its framing and nesting are checked strictly.
func (d *Decoder) checkNestedParam(proto Protocol, b []byte, off, depth int) error {
	if depth > d.maxDepth() {
		return &DecodeError{Field: "OperationError.cause.param", Offset: off, Err: ErrTooDeep}
	}
	it := tlvIter{b: b}
	t, v, start, err := it.next("OperationError.cause.param")
	if err != nil {
		// A truncated copy (no padding) is legal in a cause; accept it when
		// the declared length fits.
		if len(b) >= 4 {
			l := int(binary.BigEndian.Uint16(b[2:]))
			if l >= 4 && l <= len(b) {
				return nil
			}
		}
		return rebase(err, off)
	}
	if t.Code() == ParamOperationError {
		var scratch Param
		return d.decodeCauses(proto, v, off+start, depth+1, &scratch)
	}
	return nil
}

// checkNestedMessage validates the framing of a message carried by an
// Unrecognized Message cause, recursing into its error causes so that
// nesting stays bounded.
func (d *Decoder) checkNestedMessage(proto Protocol, b []byte, off, depth int) error {
	if depth > d.maxDepth() {
		return &DecodeError{Field: "OperationError.cause.message", Offset: off, Err: ErrTooDeep}
	}
	if len(b) < headerLen {
		return nil
	}
	var scratch Message
	err := d.decode(proto, b, &scratch, depth)
	if err == nil {
		return nil
	}
	if de, ok := err.(*DecodeError); ok && de.Err == ErrTooDeep {
		return rebase(err, off)
	}
	// An unrecognized message is by definition one the sender could not
	// parse; anything but runaway nesting is acceptable here.
	return nil
}
