package enrp

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/transport"
	"github.com/rspxdp/rspxdp/wire"
)

// rawMsg builds a message of type typ with the given payload (after the
// ENRP IDs for ENRP).
func rawMsg(p wire.Protocol, typ wire.Type, sender, receiver uint32, payload []byte) []byte {
	b := []byte{byte(typ), 0, 0, 0}
	if p == wire.ENRP {
		b = binary.BigEndian.AppendUint32(b, sender)
		b = binary.BigEndian.AppendUint32(b, receiver)
	}
	b = append(b, payload...)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

// unknownParam is a parameter of an unknown type whose action bits (top
// two) say: skip it and report it.
var unknownParam = []byte{0xff, 0x00, 0x00, 0x08, 1, 2, 3, 4}

func TestUnrecognizedMessagesAnsweredWithError(t *testing.T) {
	presence, err := Encode(Presence{Header: Header{Sender: 7, Receiver: 1}, Checksum: 0xffff})
	if err != nil {
		t.Fatal(err)
	}
	withUnknown := append(append([]byte(nil), presence...), unknownParam...)
	binary.BigEndian.PutUint16(withUnknown[2:], uint16(len(withUnknown)))
	cookie, err := (&wire.Message{Protocol: wire.ASAP, Type: wire.ASAPCookie, Params: []wire.Param{wire.CookieParam([]byte("x"))}}).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		proto wire.Protocol
		msg   []byte
		// want: the Error's cause code and info (nil: no Error at all)
		wantCode wire.CauseCode
		wantInfo []byte
		wantRcv  uint32
		// the message itself still reaches the core
		processed bool
	}{
		{name: "unknown ASAP type", proto: wire.ASAP, msg: rawMsg(wire.ASAP, 0x42, 0, 0, []byte{9, 9, 9, 9}),
			wantCode: wire.CauseUnrecognizedMessage, wantInfo: rawMsg(wire.ASAP, 0x42, 0, 0, []byte{9, 9, 9, 9})},
		{name: "unknown ENRP type", proto: wire.ENRP, msg: rawMsg(wire.ENRP, 0x33, 7, 1, nil),
			wantCode: wire.CauseUnrecognizedMessage, wantInfo: rawMsg(wire.ENRP, 0x33, 7, 1, nil), wantRcv: 7},
		{name: "ASAP message a registrar never receives", proto: wire.ASAP, msg: cookie,
			wantCode: wire.CauseUnrecognizedMessage, wantInfo: cookie},
		{name: "unknown parameter to report", proto: wire.ENRP, msg: withUnknown,
			wantCode: wire.CauseUnrecognizedParameter, wantInfo: unknownParam, wantRcv: 7, processed: true},
		{name: "an Error is never answered", proto: wire.ASAP, msg: rawMsg(wire.ASAP, wire.ASAPError, 0, 0, []byte{0xff})},
		{name: "a known message is not", proto: wire.ENRP, msg: presence, processed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newTestCore(t, 1)
			var dec wire.Decoder
			var w wire.Message
			derr := dec.Decode(tc.proto, tc.msg, &w)
			var m Message
			var merr error
			if derr == nil {
				m, merr = FromWire(&w)
			}
			m, report, ok := classify(tc.proto, tc.msg, &w, derr, m, merr)
			if report != nil {
				c.Step(5, netip.Addr{}, *report)
			}
			if ok {
				c.Step(5, netip.Addr{}, m)
			}
			if _, isPresence := m.(Presence); isPresence != tc.processed {
				t.Fatalf("message handed to the core: %#v, want processed=%v", m, tc.processed)
			}
			errs := msgsOf[ErrorMessage](c.Drain())
			if tc.wantInfo == nil {
				if len(errs) != 0 {
					t.Fatalf("answered with %+v, want no Error", errs)
				}
				return
			}
			if len(errs) != 1 || len(errs[0].Causes) != 1 {
				t.Fatalf("errors %+v, want one with one cause", errs)
			}
			e := errs[0]
			if e.Protocol != tc.proto || e.Causes[0].Code != tc.wantCode || !bytes.Equal(e.Causes[0].Info, tc.wantInfo) {
				t.Fatalf("error %+v, want %v cause %v carrying %x", e, tc.proto, tc.wantCode, tc.wantInfo)
			}
			if tc.proto == wire.ENRP && (e.Sender != 1 || e.Receiver != tc.wantRcv) {
				t.Fatalf("ENRP Error from %d to %d, want 1 to %d", e.Sender, e.Receiver, tc.wantRcv)
			}
			if c.Counters().Unrecognized != 1 {
				t.Fatalf("unrecognized counter %d", c.Counters().Unrecognized)
			}
		})
	}
}

func TestErrorMessageRoundTrip(t *testing.T) {
	for _, e := range []ErrorMessage{
		{Protocol: wire.ASAP, Causes: []wire.Cause{wire.MessageCause([]byte{0x42, 0, 0, 4})}},
		{Protocol: wire.ENRP, Header: Header{Sender: 1, Receiver: 9}, Causes: []wire.Cause{{Code: wire.CauseUnrecognizedParameter, Info: unknownParam}}},
	} {
		b, err := Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(e.Protocol, b)
		if err != nil {
			t.Fatal(err)
		}
		g, ok := got.(ErrorMessage)
		if !ok || g.Protocol != e.Protocol || g.Header != e.Header || len(g.Causes) != 1 ||
			g.Causes[0].Code != e.Causes[0].Code || !bytes.Equal(g.Causes[0].Info, e.Causes[0].Info) {
			t.Fatalf("round trip %+v -> %+v", e, got)
		}
	}
}

// TestIntegrationUnknownMessageGetsError sends unknown message types to a
// running registrar's ASAP and ENRP ports and reads the Error back.
func TestIntegrationUnknownMessageGetsError(t *testing.T) {
	n := startNode(t, itConfig(1))
	for _, tc := range []struct {
		proto wire.Protocol
		tp    transport.Protocol
		addr  string
		msg   []byte
	}{
		{wire.ASAP, transport.ASAP, n.srv.ASAPAddr().String(), rawMsg(wire.ASAP, 0x42, 0, 0, []byte{1, 2, 3, 4})},
		{wire.ENRP, transport.ENRP, n.srv.ENRPAddr().String(), rawMsg(wire.ENRP, 0x33, 77, 1, nil)},
	} {
		t.Run(tc.proto.String(), func(t *testing.T) {
			tr, err := transport.New(testenv.Transport(), transport.Config{Protocol: tc.tp, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			conn, err := tr.Dial(ctx, tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.WriteMessage(ctx, tc.msg); err != nil {
				t.Fatal(err)
			}
			b, err := conn.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			m, err := Decode(tc.proto, b)
			if err != nil {
				t.Fatal(err)
			}
			e, ok := m.(ErrorMessage)
			if !ok || len(e.Causes) != 1 || e.Causes[0].Code != wire.CauseUnrecognizedMessage || !bytes.Equal(e.Causes[0].Info, tc.msg) {
				t.Fatalf("answer %+v, want an Error with an Unrecognized Message cause carrying %x", m, tc.msg)
			}
			if tc.proto == wire.ENRP && (e.Sender != 1 || e.Receiver != 77) {
				t.Fatalf("ENRP Error header %+v", e.Header)
			}
		})
	}
	if got := n.srv.Counters().Unrecognized; got != 2 {
		t.Fatalf("unrecognized counter %d, want 2", got)
	}
}
