package wire_test

import (
	"testing"

	"github.com/rspxdp/rspxdp/wire"
	"github.com/rspxdp/rspxdp/wire/wiretest"
)

func registration() *wire.Message { return wiretest.Messages()[0] }

// handleTableResponse128 is an ENRP Handle Table Response with 128 PEs of
// one pool, the largest answer a registrar typically sends in one piece.
func handleTableResponse128() *wire.Message {
	m := &wire.Message{Protocol: wire.ENRP, Type: wire.ENRPHandleTableResponse,
		SenderID: wiretest.ServerID, ReceiverID: wiretest.PeerID,
		Params: []wire.Param{wire.PoolHandleParam([]byte(wiretest.PoolHandle))}}
	for i := 0; i < 128; i++ {
		pe := wiretest.PE(uint32(i+1), wire.Policy{Type: wire.PolicyLeastUsed, Load: uint32(i)}, wire.ParamSCTPTransport)
		m.Params = append(m.Params, wire.PoolElementParam(pe))
	}
	return m
}

func benchEncode(b *testing.B, m *wire.Message) {
	buf, err := m.AppendBinary(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = m.AppendBinary(buf[:0])
	}
}

func benchDecode(b *testing.B, m *wire.Message) {
	buf, err := m.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	var dec wire.Decoder
	var out wire.Message
	// Warm up: the first decode sizes out's storage, later ones reuse it.
	if err := dec.Decode(m.Protocol, buf, &out); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if err := dec.Decode(m.Protocol, buf, &out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeRegistration(b *testing.B)           { benchEncode(b, registration()) }
func BenchmarkDecodeRegistration(b *testing.B)           { benchDecode(b, registration()) }
func BenchmarkEncodeHandleTableResponse128(b *testing.B) { benchEncode(b, handleTableResponse128()) }
func BenchmarkDecodeHandleTableResponse128(b *testing.B) { benchDecode(b, handleTableResponse128()) }

// BenchmarkDecodeRegistrationFresh decodes into a new Message each time,
// the cost a caller pays without reuse.
func BenchmarkDecodeRegistrationFresh(b *testing.B) {
	buf, _ := registration().MarshalBinary()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.Decode(wire.ASAP, buf); err != nil {
			b.Fatal(err)
		}
	}
}
