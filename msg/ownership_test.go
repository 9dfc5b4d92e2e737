package msg

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
	"github.com/rspxdp/rspxdp/wire"
)

// The owner identity and the claim epoch travel with a PE in ENRP, as
// private parameters receivers that do not know them skip silently, and
// never in ASAP.
func TestOwnershipParameters(t *testing.T) {
	for _, p := range []wire.ParamType{ParamOwner, ParamEpoch} {
		if p.Action() != wire.ActionSkip || p.Known() {
			t.Fatalf("parameter %#x: action %v known=%v, want skipped silently", uint16(p), p.Action(), p.Known())
		}
	}
	pe := PoolElement{ID: 5, Home: 1, Lifetime: time.Second, Owner: "pe/alice", Epoch: 1234567890123,
		Transport: selector.Transport{Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.5")}, Port: 7, Protocol: selector.TCP},
		ASAP:      netip.MustParseAddrPort("10.0.0.5:4000"), Policy: policy.RoundRobin()}
	for _, m := range []Message{
		HandleUpdate{Header: Header{Sender: 1, Receiver: 2}, Action: AddPE, Handle: "echo", PE: pe},
		HandleTableResponse{Header: Header{Sender: 1, Receiver: 2}, Pools: []Pool{{Handle: "echo", PEs: []PoolElement{pe}}}},
	} {
		b, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(wire.ENRP, b)
		if err != nil {
			t.Fatal(err)
		}
		var gpe PoolElement
		switch g := got.(type) {
		case HandleUpdate:
			gpe = g.PE
		case HandleTableResponse:
			gpe = g.Pools[0].PEs[0]
		}
		if gpe.Owner != pe.Owner || gpe.Epoch != pe.Epoch {
			t.Fatalf("%T: owner %q epoch %d, want %q %d", m, gpe.Owner, gpe.Epoch, pe.Owner, pe.Epoch)
		}
	}
	for _, m := range []Message{
		Registration{Handle: "echo", PE: pe},
		HandleResolutionResponse{Handle: "echo", PEs: []PoolElement{pe}},
	} {
		b, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("pe/alice")) {
			t.Fatalf("%T carries the owner identity", m)
		}
	}
}
