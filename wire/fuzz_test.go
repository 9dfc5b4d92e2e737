package wire_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/rspxdp/rspxdp/internal/capture"
	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/wire"
	"github.com/rspxdp/rspxdp/wire/wiretest"
)

// fuzzSeeds returns encoded sample messages of every type and, when the
// shared capture is present, every rsplib message in it. The first byte of
// a seed selects the protocol (even ASAP, odd ENRP).
func fuzzSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	for _, m := range wiretest.Messages() {
		b, err := m.MarshalBinary()
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, append([]byte{byte(m.Protocol - 1)}, b...))
	}
	if root, err := testenv.ModuleRoot(); err == nil {
		path := filepath.Join(root, "..", "shared", "fixtures", "rsplib-3.4.4-rfc.pcap")
		if _, err := os.Stat(path); err == nil {
			msgs, err := capture.ReadFile(path)
			if err != nil {
				tb.Fatal(err)
			}
			seen := map[string]bool{}
			for _, cm := range msgs {
				// One seed per distinct (protocol, type, length) keeps the
				// corpus varied but small.
				k := string([]byte{byte(cm.Protocol), cm.Payload[0], byte(len(cm.Payload) >> 8), byte(len(cm.Payload))})
				if !seen[k] {
					seen[k] = true
					seeds = append(seeds, append([]byte{byte(cm.Protocol - 1)}, cm.Payload...))
				}
			}
		}
	}
	return seeds
}

func protoOf(b byte) wire.Protocol {
	if b&1 == 1 {
		return wire.ENRP
	}
	return wire.ASAP
}

// FuzzDecodeMessage: decoding never panics, and whatever decodes encodes,
// decodes again to the same message and encodes to the same bytes.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		p := protoOf(data[0])
		var m1 wire.Message
		if err := new(wire.Decoder).Decode(p, data[1:], &m1); err != nil {
			return
		}
		b1, err := m1.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		var m2 wire.Message
		if err := new(wire.Decoder).Decode(p, b1, &m2); err != nil {
			t.Fatalf("re-encoded message does not decode: %v\n% x", err, b1)
		}
		if !reflect.DeepEqual(&m1, &m2) {
			t.Fatalf("decode/encode/decode changed the message\n%+v\n%+v", m1, m2)
		}
		b2, err := m2.MarshalBinary()
		if err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("encoding not stable: %v\n% x\n% x", err, b1, b2)
		}
		// A reused message must decode like a fresh one.
		if err := new(wire.Decoder).Decode(p, b1, &m1); err != nil || !reflect.DeepEqual(&m1, &m2) {
			t.Fatalf("decoding into a reused message differs: %v", err)
		}
	})
}

// FuzzParameters drives the TLV codec directly with single parameters.
func FuzzParameters(f *testing.F) {
	for _, m := range wiretest.Messages() {
		for i := range m.Params {
			b, err := wire.AppendParam(nil, &m.Params[i])
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var dec wire.Decoder
		p1, err := dec.DecodeParam(data)
		if err != nil {
			return
		}
		b1, err := wire.AppendParam(nil, &p1)
		if err != nil {
			t.Fatalf("decoded parameter does not encode: %v", err)
		}
		p2, err := dec.DecodeParam(b1)
		if err != nil {
			t.Fatalf("re-encoded parameter does not decode: %v\n% x", err, b1)
		}
		if !reflect.DeepEqual(p1, p2) {
			t.Fatalf("decode/encode/decode changed the parameter\n%+v\n%+v", p1, p2)
		}
		b2, _ := wire.AppendParam(nil, &p2)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("encoding not stable\n% x\n% x", b1, b2)
		}
	})
}
