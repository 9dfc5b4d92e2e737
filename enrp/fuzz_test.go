package enrp

import (
	"reflect"
	"testing"

	"github.com/rspxdp/rspxdp/wire"
)

// FuzzDecode feeds arbitrary bytes to the registrar's decoder: it must not
// panic, and whatever it accepts must encode and decode back to the same
// message, so the registrar never forwards something it cannot re-read.
func FuzzDecode(f *testing.F) {
	for _, m := range []Message{
		Registration{Handle: "echo", PE: testPE(1)},
		HandleResolution{Handle: "echo", MaxItems: 5},
		Presence{Header: Header{Sender: 1, Receiver: 2}, Reply: true, Checksum: 7},
		HandleTableResponse{Header: Header{Sender: 1}, More: true, Pools: []Pool{{Handle: "a", PEs: []PoolElement{testPE(2)}}}},
		HandleUpdate{Header: Header{Sender: 1}, Handle: "a", PE: testPE(3)},
		InitTakeover{Header: Header{Sender: 1}, Target: 3},
	} {
		b, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Fuzz(func(t *testing.T, b []byte, enrp bool) {
		proto := wire.ASAP
		if enrp {
			proto = wire.ENRP
		}
		m, err := Decode(proto, b)
		if err != nil {
			return
		}
		b2, err := Encode(m)
		if err != nil {
			t.Fatalf("decoded %#v does not encode: %v", m, err)
		}
		m2, err := Decode(proto, b2)
		if err != nil {
			t.Fatalf("re-encoded %#v does not decode: %v", m, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the message:\n%#v\n%#v", m, m2)
		}
	})
}
