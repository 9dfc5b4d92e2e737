package wire_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/rspxdp/rspxdp/wire"
	"github.com/rspxdp/rspxdp/wire/wiretest"
)

// TestRoundTripEveryType encodes a sample of every message type, decodes
// it, compares the structure and re-encodes it byte for byte.
func TestRoundTripEveryType(t *testing.T) {
	seen := map[wire.Protocol]map[wire.Type]bool{wire.ASAP: {}, wire.ENRP: {}}
	var dec wire.Decoder
	var m wire.Message // reused on purpose: decoding must not leak state
	for i, want := range wiretest.Messages() {
		b, err := want.MarshalBinary()
		if err != nil {
			t.Fatalf("sample %d %s: %v", i, want.TypeName(), err)
		}
		if int(binary.BigEndian.Uint16(b[2:])) != len(b) || len(b)%4 != 0 {
			t.Errorf("sample %d: length field %d, encoded %d bytes", i, binary.BigEndian.Uint16(b[2:]), len(b))
		}
		if err := dec.Decode(want.Protocol, b, &m); err != nil {
			t.Fatalf("sample %d %s %s: decode: %v", i, want.Protocol, want.TypeName(), err)
		}
		again, err := m.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("sample %d %s: re-encode differs (%v)\n got % x\nwant % x", i, want.TypeName(), err, again, b)
		}
		fresh, err := wire.Decode(want.Protocol, b)
		if err != nil {
			t.Fatal(err)
		}
		if !sameMessage(fresh, want) {
			t.Errorf("sample %d %s: decoded\n%+v\nwant\n%+v", i, want.TypeName(), fresh, want)
		}
		seen[want.Protocol][want.Type] = true
	}
	for _, p := range []wire.Protocol{wire.ASAP, wire.ENRP} {
		for _, ty := range p.Types() {
			if !seen[p][ty] {
				t.Errorf("no sample of %s %s", p, p.TypeName(ty))
			}
		}
	}
}

// sameMessage compares after encoding both: nil and empty slices differ in
// reflect.DeepEqual but not on the wire, and the samples leave nested
// parameter types implicit.
func sameMessage(a, b *wire.Message) bool {
	x, err1 := a.MarshalBinary()
	y, err2 := b.MarshalBinary()
	if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
		return false
	}
	return a.Protocol == b.Protocol && a.Type == b.Type && a.Flags == b.Flags && len(a.Params) == len(b.Params)
}

func TestDecodedFields(t *testing.T) {
	for _, want := range wiretest.Messages() {
		b := wiretest.Encode([]*wire.Message{want})[0]
		m, err := wire.Decode(want.Protocol, b)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case want.Protocol == wire.ASAP && want.Type == wire.ASAPRegistration:
			pe := m.PoolElement()
			if string(m.PoolHandle()) != wiretest.PoolHandle || pe == nil || pe.ID != wiretest.PEID ||
				pe.Policy.Type != wire.PolicyWeightedRoundRobin || pe.Policy.Weight != 5 ||
				pe.UserTransport.Kind != wire.ParamSCTPTransport || len(pe.UserTransport.Addrs) != 2 ||
				pe.ASAPTransport.Port != 50000 || pe.Lifetime != 300000 || pe.HomeRegistrar != wiretest.ServerID {
				t.Errorf("registration decoded as %+v", m)
			}
		case want.Protocol == wire.ASAP && want.Type == wire.ASAPEndpointKeepAlive:
			if m.ServerID != wiretest.ServerID || m.Flags != wire.FlagHome {
				t.Errorf("keep-alive: server %#x flags %v", m.ServerID, m.Flags)
			}
		case want.Protocol == wire.ENRP && want.Type == wire.ENRPHandleTableResponse:
			pools := m.Pools()
			if m.SenderID != wiretest.ServerID || m.ReceiverID != wiretest.PeerID || m.Flags&wire.FlagMoreToSend == 0 ||
				len(pools) != 2 || len(pools[0].Elements) != 1 || len(pools[1].Elements) != 2 || string(pools[1].Handle) != "other-pool" {
				t.Errorf("handle table response: %+v pools %+v", m, pools)
			}
		case want.Protocol == wire.ENRP && want.Type == wire.ENRPInitTakeover:
			if m.TargetID != 0x5eed0003 {
				t.Errorf("target %#x", m.TargetID)
			}
		case want.Protocol == wire.ASAP && want.Type == wire.ASAPHandleResolutionResponse:
			seen := map[wire.PolicyType]wire.Policy{}
			for _, pe := range m.Pools()[0].Elements {
				seen[pe.Policy.Type] = pe.Policy
			}
			for _, pt := range wire.PolicyTypes() {
				got, ok := seen[pt]
				if !ok || got.Opaque != nil {
					t.Errorf("policy %v: decoded %+v", pt, got)
					continue
				}
				names, vals := got.Values()
				ref := wiretest.Policy(pt)
				wantNames, wantVals := ref.Values()
				if !reflect.DeepEqual(names, wantNames) || !reflect.DeepEqual(vals, wantVals) {
					t.Errorf("policy %v: values %v %v, want %v %v", pt, names, vals, wantNames, wantVals)
				}
			}
		case want.Protocol == wire.ASAP && want.Type == wire.ASAPError:
			causes := m.Causes()
			if len(causes) != 11 {
				t.Fatalf("%d causes", len(causes))
			}
			var dec wire.Decoder
			for _, c := range causes {
				switch {
				case c.Code.NestedParam():
					if _, err := dec.DecodeParam(c.Info); err != nil && c.Code != wire.CauseUnrecognizedParameter {
						t.Errorf("cause %v: nested param: %v", c.Code, err)
					}
				case c.Code.NestedMessage():
					inner, err := wire.Decode(wire.ASAP, c.Info)
					if err != nil || inner.Type != wire.ASAPHandleResolution {
						t.Errorf("cause %v: nested message %v %v", c.Code, inner, err)
					}
				}
			}
		case want.Protocol == wire.ASAP && want.Type == wire.ASAPBusinessCard:
			un := m.Unrecognized()
			rep := m.ToReport()
			if len(un) != 2 || len(rep) != 1 || rep[0].Type != 0xc124 || string(un[0].Raw) != "skip me" {
				t.Errorf("unrecognized %v, to report %v", un, rep)
			}
			if pe := m.Pools()[0].Elements[1]; pe.Policy.Type != 0xdead0001 || len(pe.Policy.Opaque) != 8 {
				t.Errorf("opaque policy decoded as %+v", pe.Policy)
			}
		}
	}
}

func hdr(typ byte, length int) []byte {
	return []byte{typ, 0, byte(length >> 8), byte(length)}
}

func param(t uint16, v ...byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, t)
	b = binary.BigEndian.AppendUint16(b, uint16(4+len(v)))
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func msg(typ byte, params ...[]byte) []byte {
	var body []byte
	for _, p := range params {
		body = append(body, p...)
	}
	return append(hdr(typ, 4+len(body)), body...)
}

// nestPE builds a Pool Element whose extra nested parameter is another
// Pool Element, depth times over.
func nestPE(depth int) []byte {
	inner := param(uint16(wire.ParamPoolHandle), 'x')
	for i := 0; i < depth; i++ {
		inner = param(uint16(wire.ParamPoolElement), append(make([]byte, 12), inner...)...)
	}
	return inner
}

func TestDecodeErrors(t *testing.T) {
	ph := param(uint16(wire.ParamPoolHandle), 'p')
	for _, tc := range []struct {
		name  string
		proto wire.Protocol
		in    []byte
		dec   wire.Decoder
		err   error
		field string
	}{
		{"empty", wire.ASAP, nil, wire.Decoder{}, wire.ErrTruncated, "header"},
		{"short header", wire.ASAP, []byte{1, 0, 0}, wire.Decoder{}, wire.ErrTruncated, "header"},
		{"length below header", wire.ASAP, hdr(1, 2), wire.Decoder{}, wire.ErrBadLength, "header.length"},
		{"length past buffer", wire.ASAP, hdr(1, 8), wire.Decoder{}, wire.ErrTruncated, "header.length"},
		{"trailing bytes", wire.ASAP, append(hdr(1, 4), 0, 0, 0, 0), wire.Decoder{}, wire.ErrBadLength, "header.length"},
		{"too large", wire.ASAP, msg(1, ph, ph), wire.Decoder{MaxMessageSize: 12}, wire.ErrTooLarge, "header.length"},
		{"unknown type", wire.ASAP, hdr(0x0f, 4), wire.Decoder{}, wire.ErrUnknownMessage, "header.type"},
		{"unknown ENRP type", wire.ENRP, append(hdr(0x0b, 12), make([]byte, 8)...), wire.Decoder{}, wire.ErrUnknownMessage, "header.type"},
		{"bad protocol", 0, hdr(1, 4), wire.Decoder{}, wire.ErrBadValue, "protocol"},
		{"ENRP without ids", wire.ENRP, msg(1), wire.Decoder{}, wire.ErrTruncated, "sender/receiver ID"},
		{"takeover without target", wire.ENRP, append(hdr(7, 12), make([]byte, 8)...), wire.Decoder{}, wire.ErrTruncated, "target ID"},
		{"keep-alive without server id", wire.ASAP, msg(7), wire.Decoder{}, wire.ErrTruncated, "server ID"},
		{"param header cut", wire.ASAP, msg(1, []byte{0, 9}), wire.Decoder{}, wire.ErrTruncated, "param.header"},
		{"param length past message", wire.ASAP, msg(1, []byte{0, 9, 0, 40, 'a', 'b', 'c', 'd'}), wire.Decoder{}, wire.ErrTruncated, "param(PoolHandle).length"},
		{"param length below header", wire.ASAP, msg(1, []byte{0, 9, 0, 2}), wire.Decoder{}, wire.ErrBadLength, "param(PoolHandle).length"},
		{"padding missing", wire.ASAP, msg(1, []byte{0, 9, 0, 5, 'a'}), wire.Decoder{}, wire.ErrTruncated, "param(PoolHandle).length"},
		{"short IPv4", wire.ASAP, msg(0x0d, param(1, 1, 2, 3)), wire.Decoder{}, wire.ErrBadLength, "IPv4Address.length"},
		{"short PE id", wire.ASAP, msg(2, ph, param(uint16(wire.ParamPEIdentifier), 1, 2)), wire.Decoder{}, wire.ErrBadLength, "PEIdentifier.length"},
		{"short pool element", wire.ASAP, msg(1, ph, param(uint16(wire.ParamPoolElement), 1, 2, 3, 4)), wire.Decoder{}, wire.ErrBadLength, "PoolElement.length"},
		{"nested address cut", wire.ASAP, msg(0x0a, []byte{0, 0, 0, 1}, param(uint16(wire.ParamSCTPTransport), 0, 1, 0, 0, 0, 1, 0, 8, 1)), wire.Decoder{}, wire.ErrTruncated, ""},
		{"unknown param stop", wire.ASAP, msg(1, ph, param(0x0123, 1)), wire.Decoder{}, wire.ErrUnknownParam, "Param(0x0123)"},
		{"unknown param stop and report", wire.ASAP, msg(1, ph, param(0x4123, 1)), wire.Decoder{}, wire.ErrUnknownParam, "Param(0x4123)"},
		{"nested too deep", wire.ASAP, msg(1, ph, nestPE(10)), wire.Decoder{}, wire.ErrTooDeep, ""},
		{"nested too deep for small limit", wire.ASAP, msg(1, ph, nestPE(2)), wire.Decoder{MaxDepth: 2}, wire.ErrTooDeep, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m wire.Message
			err := tc.dec.Decode(tc.proto, tc.in, &m)
			if !errors.Is(err, tc.err) {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
			var de *wire.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("%T is not a *DecodeError", err)
			}
			if tc.field != "" && de.Field != tc.field {
				t.Errorf("field %q, want %q (%v)", de.Field, tc.field, err)
			}
			if tc.err == wire.ErrUnknownParam && de.Report != (de.Param.Action() == wire.ActionStopReport) {
				t.Errorf("report %v for %v", de.Report, de.Param)
			}
		})
	}
	// The same nesting within the default limit decodes.
	if _, err := wire.Decode(wire.ASAP, msg(1, ph, nestPE(3))); err != nil {
		t.Errorf("nesting within limits: %v", err)
	}
}

// TestUnknownMessageInCauseNesting builds error messages whose Unrecognized
// Message cause holds an error message, and so on: the depth limit must
// stop it.
func TestUnknownMessageInCauseNesting(t *testing.T) {
	inner := msg(0x05, param(uint16(wire.ParamPoolHandle), 'p'))
	for i := 0; i < 12; i++ {
		cause := binary.BigEndian.AppendUint16(nil, uint16(wire.CauseUnrecognizedMessage))
		cause = binary.BigEndian.AppendUint16(cause, uint16(4+len(inner)))
		cause = append(cause, inner...)
		inner = msg(0x0e, param(uint16(wire.ParamOperationError), cause...))
	}
	_, err := wire.Decode(wire.ASAP, inner)
	if !errors.Is(err, wire.ErrTooDeep) {
		t.Fatalf("got %v, want ErrTooDeep", err)
	}
	_, err = (&wire.Decoder{MaxDepth: 64}).DecodeParam(inner[4:])
	if err != nil {
		t.Fatalf("with a higher limit: %v", err)
	}
}

func TestEncodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    wire.Message
	}{
		{"unknown type", wire.Message{Protocol: wire.ASAP, Type: 0x20}},
		{"no protocol", wire.Message{Type: 1}},
		{"IPv6 in IPv4 param", wire.Message{Protocol: wire.ASAP, Type: wire.ASAPBusinessCard, Params: []wire.Param{{Type: wire.ParamIPv4Address}}}},
		{"handle too long", wire.Message{Protocol: wire.ASAP, Type: wire.ASAPHandleResolution, Params: []wire.Param{wire.PoolHandleParam(make([]byte, 70000))}}},
		{"message too long", wire.Message{Protocol: wire.ASAP, Type: wire.ASAPHandleResolution, Params: []wire.Param{
			wire.PoolHandleParam(make([]byte, 40000)), wire.PoolHandleParam(make([]byte, 40000))}}},
		{"bad transport kind", wire.Message{Protocol: wire.ASAP, Type: wire.ASAPRegistration, Params: []wire.Param{
			wire.PoolElementParam(wire.PoolElement{UserTransport: wire.Transport{Kind: wire.ParamCookie}})}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.m.AppendBinary([]byte{0xaa})
			var ee *wire.EncodeError
			if !errors.As(err, &ee) {
				t.Fatalf("got %v, want *EncodeError", err)
			}
			if !bytes.Equal(b, []byte{0xaa}) {
				t.Errorf("failed append left % x", b)
			}
		})
	}
}

// TestDecodeRegistrationAllocs holds the zero-allocation promise.
func TestDecodeRegistrationAllocs(t *testing.T) {
	b := wiretest.Encode(wiretest.Messages()[:1])[0]
	var dec wire.Decoder
	var m wire.Message
	if err := dec.Decode(wire.ASAP, b, &m); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := dec.Decode(wire.ASAP, b, &m); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("decoding a Registration into a reused Message: %v allocs, want 0", allocs)
	}
	buf := make([]byte, 0, 256)
	allocs = testing.AllocsPerRun(100, func() {
		buf, _ = m.AppendBinary(buf[:0])
	})
	if allocs != 0 {
		t.Errorf("encoding a Registration into a buffer with room: %v allocs, want 0", allocs)
	}
	htr, err := handleTableResponse128().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(wire.ENRP, htr, &m); err != nil {
		t.Fatal(err)
	}
	allocs = testing.AllocsPerRun(20, func() {
		if err := dec.Decode(wire.ENRP, htr, &m); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("decoding a 128-PE Handle Table Response into a reused Message: %v allocs, want 0", allocs)
	}
}

func TestNames(t *testing.T) {
	if got := wire.ASAP.TypeName(wire.ASAPRegistrationResponse); got != "RegistrationResponse" {
		t.Error(got)
	}
	if got := wire.ENRP.TypeName(0x33); got != "Type(0x33)" {
		t.Error(got)
	}
	if got := wire.ParamHandleResolution.String(); got != "HandleResolution" {
		t.Error(got)
	}
	if got := wire.ParamType(0x8123).Action(); got != wire.ActionSkip {
		t.Error(got)
	}
	if got := wire.ENRP.FlagNames(wire.ENRPHandleTableResponse, wire.FlagReject|wire.FlagMoreToSend|0x80); !reflect.DeepEqual(got, []string{"R", "M", "0x80"}) {
		t.Error(got)
	}
	if got := wire.PolicyType(0xb0002001).String(); got != "WRAND-DPF" {
		t.Error(got)
	}
}

func TestString(t *testing.T) {
	got := wiretest.Messages()[0].String()
	want := `ASAP Registration PoolHandle="rspxdp-sample-pool" PE{id=0x0badcafe home=0x5eed0001 life=300000ms user=SCTP[192.0.2.10,2001:db8::10]:7070/data+ctrl policy=WRR(weight=5) asap=SCTP[192.0.2.10]:50000/data}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestCauses(t *testing.T) {
	// Skip-and-report parameters become Unrecognized Parameter causes.
	m := wiretest.Messages()[13] // Business Card with 0x8123 and 0xc124
	b := wiretest.Encode([]*wire.Message{m})[0]
	got, err := wire.Decode(wire.ASAP, b)
	if err != nil {
		t.Fatal(err)
	}
	causes := got.ReportCauses()
	if len(causes) != 1 || causes[0].Code != wire.CauseUnrecognizedParameter {
		t.Fatalf("report causes %v", causes)
	}
	var dec wire.Decoder
	p, err := causes[0].Param(&dec)
	if err != nil || p.Type != 0xc124 || !bytes.Equal(p.Raw, []byte{1}) {
		t.Errorf("reported parameter %+v %v", p, err)
	}
	// Stop-and-report gives the bytes to report in the error.
	_, err = wire.Decode(wire.ASAP, msg(1, param(uint16(wire.ParamPoolHandle), 'p'), param(0x4321, 7, 7)))
	var de *wire.DecodeError
	if !errors.As(err, &de) || !de.Report || !bytes.Equal(de.Bytes, []byte{0x43, 0x21, 0, 6, 7, 7}) {
		t.Errorf("stop-and-report: %v %+v", err, de)
	}
	// Unrecognized Message causes carry a message, decodable again.
	reg := wiretest.Encode(wiretest.Messages()[:1])[0]
	c := wire.MessageCause(reg)
	inner, err := c.Message(&dec, wire.ASAP)
	if err != nil || inner.Type != wire.ASAPRegistration {
		t.Errorf("nested message %v %v", inner, err)
	}
	if _, err := c.Param(&dec); !errors.Is(err, wire.ErrBadValue) {
		t.Errorf("Param of a message cause: %v", err)
	}
	pc, err := wire.ParamCause(wire.CauseInvalidValues, &wire.Param{Type: wire.ParamPEIdentifier, PEID: 7})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := pc.Param(&dec); err != nil || p.PEID != 7 {
		t.Errorf("invalid values cause: %+v %v", p, err)
	}
}

// ID marshals as FormatID's string and reads that form, a quoted decimal
// and a bare number back; anything else is refused.
func TestIDJSON(t *testing.T) {
	b, err := json.Marshal(struct{ ID wire.ID }{0x201})
	if err != nil || string(b) != `{"ID":"0x00000201"}` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	for _, tc := range []struct {
		in   string
		want wire.ID
		ok   bool
	}{
		{`"0x00000201"`, 0x201, true},
		{`"513"`, 513, true},
		{`513`, 513, true},
		{`"0xffffffff"`, 0xffffffff, true},
		{`"0x100000000"`, 0, false},
		{`"pe"`, 0, false},
		{`-1`, 0, false},
	} {
		var id wire.ID
		err := json.Unmarshal([]byte(tc.in), &id)
		if (err == nil) != tc.ok || (tc.ok && id != tc.want) {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v ok=%v", tc.in, id, err, tc.want, tc.ok)
		}
	}
}
