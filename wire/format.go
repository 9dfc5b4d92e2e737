package wire

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// String renders m on one line for logs and the decode tool, e.g.
// "ASAP Registration PoolHandle="echo" PE{0x1 ...}".
func (m *Message) String() string {
	var sb strings.Builder
	sb.WriteString(m.Protocol.String())
	sb.WriteByte(' ')
	sb.WriteString(m.TypeName())
	if f := m.Protocol.FlagNames(m.Type, m.Flags); len(f) > 0 {
		fmt.Fprintf(&sb, " flags=%s", strings.Join(f, ","))
	}
	if m.Protocol == ENRP {
		fmt.Fprintf(&sb, " sender=0x%08x receiver=0x%08x", m.SenderID, m.ReceiverID)
	}
	switch {
	case m.hasTarget():
		fmt.Fprintf(&sb, " target=0x%08x", m.TargetID)
	case m.hasUpdate():
		action := "add"
		if m.Action == UpdateDelPE {
			action = "del"
		} else if m.Action != UpdateAddPE {
			action = strconv.Itoa(int(m.Action))
		}
		fmt.Fprintf(&sb, " action=%s", action)
		if m.Reserved != 0 {
			fmt.Fprintf(&sb, " reserved=%#04x", m.Reserved)
		}
	case m.hasServerID():
		fmt.Fprintf(&sb, " server=0x%08x", m.ServerID)
	}
	for i := range m.Params {
		sb.WriteByte(' ')
		sb.WriteString(m.Params[i].String())
	}
	return sb.String()
}

// String renders one parameter as Name=value.
func (p *Param) String() string {
	name := p.Type.String()
	switch p.Type.Code() {
	case ParamIPv4Address, ParamIPv6Address:
		return name + "=" + p.Addr.String()
	case ParamDCCPTransport, ParamSCTPTransport, ParamTCPTransport, ParamUDPTransport, ParamUDPLiteTransport:
		t := p.Transport
		t.Kind = p.Type
		return "Transport=" + t.String()
	case ParamPolicy:
		return name + "=" + p.Policy.String()
	case ParamPoolHandle:
		return name + "=" + quoteBytes(p.PoolHandle)
	case ParamPoolElement:
		return p.PoolElement.String()
	case ParamServerInformation:
		return p.Server.String()
	case ParamOperationError:
		parts := make([]string, len(p.Causes))
		for i, c := range p.Causes {
			parts[i] = c.String()
		}
		return name + "=[" + strings.Join(parts, ",") + "]"
	case ParamCookie:
		return fmt.Sprintf("%s=%d bytes", name, len(p.Cookie))
	case ParamPEIdentifier:
		return fmt.Sprintf("%s=0x%08x", name, p.PEID)
	case ParamPEChecksum:
		return fmt.Sprintf("%s=%#04x", name, p.Checksum)
	case ParamHandleResolution.Code():
		return fmt.Sprintf("%s=items:%d", name, p.Items)
	}
	return fmt.Sprintf("%s(%s)=%s", name, p.Type.Action(), hex.EncodeToString(p.Raw))
}

// quoteBytes shows a pool handle as a Go string when printable, else hex.
func quoteBytes(b []byte) string {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return "0x" + hex.EncodeToString(b)
		}
	}
	return strconv.Quote(string(b))
}

// String renders a transport as e.g. "SCTP[10.0.0.1,2001:db8::1]:7/data+ctrl".
func (t Transport) String() string {
	kind := strings.TrimSuffix(t.Kind.String(), "Transport")
	addrs := make([]string, len(t.Addrs))
	for i, a := range t.Addrs {
		addrs[i] = a.String()
	}
	s := fmt.Sprintf("%s[%s]:%d", kind, strings.Join(addrs, ","), t.Port)
	switch c := t.Kind.Code(); {
	case c == ParamSCTPTransport || c == ParamTCPTransport:
		switch t.Use {
		case UseDataOnly:
			s += "/data"
		case UseDataPlusControl:
			s += "/data+ctrl"
		default:
			s += fmt.Sprintf("/use=%d", t.Use)
		}
	case t.Use != 0:
		s += fmt.Sprintf("/reserved=%#04x", uint16(t.Use))
	}
	if t.Kind.Code() == ParamDCCPTransport {
		s += fmt.Sprintf("/service=%d", t.ServiceCode)
	}
	for _, e := range t.Extra {
		s += "+" + e.String()
	}
	return s
}

// String renders a policy as e.g. "WRR(weight=3)" or, for one kept
// opaque, "Policy(0xdead0001)(0102…)".
func (p Policy) String() string {
	if p.Opaque != nil {
		return fmt.Sprintf("%v(opaque=%s)", p.Type, hex.EncodeToString(p.Opaque))
	}
	names, vals := p.Values()
	if len(names) == 0 {
		return p.Type.String()
	}
	parts := make([]string, len(names))
	for i := range names {
		parts[i] = fmt.Sprintf("%s=%d", names[i], vals[i])
	}
	return p.Type.String() + "(" + strings.Join(parts, ",") + ")"
}

// String renders a pool element on one line.
func (pe PoolElement) String() string {
	s := fmt.Sprintf("PE{id=0x%08x home=0x%08x life=%dms", pe.ID, pe.HomeRegistrar, pe.Lifetime)
	if pe.UserTransport.Kind != 0 {
		s += " user=" + pe.UserTransport.String()
	}
	if pe.Policy.Type != 0 || pe.Policy.Opaque != nil {
		s += " policy=" + pe.Policy.String()
	}
	if pe.ASAPTransport.Kind != 0 {
		s += " asap=" + pe.ASAPTransport.String()
	}
	for _, e := range pe.Extra {
		s += " " + e.String()
	}
	return s + "}"
}

// String renders a server information parameter on one line.
func (si ServerInfo) String() string {
	s := fmt.Sprintf("Server{id=0x%08x", si.ID)
	if si.Transport.Kind != 0 {
		s += " " + si.Transport.String()
	}
	for _, e := range si.Extra {
		s += " " + e.String()
	}
	return s + "}"
}

// String renders a cause as its name with its information in hex.
func (c Cause) String() string {
	if len(c.Info) == 0 {
		return c.Code.String()
	}
	return fmt.Sprintf("%v(%s)", c.Code, hex.EncodeToString(c.Info))
}

// String renders a raw parameter as type=hex; rspxdp's ASAP endpoint
// (ParamASAPEndpoint) as ASAPEndpoint=<its nested transport>.
func (r RawParam) String() string {
	if t, ok := r.ASAPEndpoint(); ok {
		return r.Type.String() + "=" + t.String()
	}
	return r.Type.String() + "=" + hex.EncodeToString(r.Value)
}

// ASAPEndpoint decodes the transport parameter nested in a
// ParamASAPEndpoint; ok is false for any other parameter or a value that
// is not a transport.
func (r RawParam) ASAPEndpoint() (*Param, bool) {
	if r.Type != ParamASAPEndpoint {
		return nil, false
	}
	var d Decoder
	p, err := d.DecodeParam(r.Value)
	if err != nil || !p.Type.IsTransport() {
		return nil, false
	}
	return &p, true
}

// AddrPorts returns the transport's addresses combined with its port.
func (t Transport) AddrPorts() []netip.AddrPort {
	out := make([]netip.AddrPort, len(t.Addrs))
	for i, a := range t.Addrs {
		out[i] = netip.AddrPortFrom(a, t.Port)
	}
	return out
}

// ID is a PE or registrar identifier in a JSON document. It marshals as
// the string FormatID writes ("0x00000201"), so JSON shows identifiers as
// text, logs and metric labels do, and it reads that form back (or a plain
// JSON number, as older documents have it). It has no String method on
// purpose: fmt's %x and %d keep formatting it as the number it is.
type ID uint32

// MarshalJSON writes id as a quoted 0x00000201.
func (id ID) MarshalJSON() ([]byte, error) {
	return []byte(strconv.Quote(FormatID(uint32(id)))), nil
}

// UnmarshalJSON reads "0x00000201", "513" or 513.
func (id *ID) UnmarshalJSON(b []byte) error {
	s := string(b)
	if u, err := strconv.Unquote(s); err == nil {
		s = u
	}
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return fmt.Errorf("identifier %s: not 0x and eight hex digits, nor a number below 2^32", b)
	}
	*id = ID(v)
	return nil
}

// FormatID writes a PE or registrar identifier the one way rspxdp shows
// identifiers everywhere (logs, status, metrics labels, decode text and
// JSON): 0x and eight hex digits, e.g. 0x00000201. It reads back as
// --id 0x00000201.
func FormatID(id uint32) string {
	const hex = "0123456789abcdef"
	b := []byte("0x00000000")
	for i := 9; i > 1; i-- {
		b[i] = hex[id&0xf]
		id >>= 4
	}
	return string(b)
}
