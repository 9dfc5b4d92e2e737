package enrp

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/rspxdp/rspxdp/selector/policy"
	"github.com/rspxdp/rspxdp/wire"
)

func TestCodecRoundTrip(t *testing.T) {
	pe := testPE(0x1234)
	pe.Home = 7
	pri := testPE(9)
	pri.Policy = policy.Priority(4)
	lu := testPE(10)
	lu.Policy = policy.LeastUsedDegradation(100, 5)
	h := Header{Sender: 1, Receiver: 2}
	si := ServerInfo{ID: 1, ENRP: netip.MustParseAddrPort("127.0.0.1:9901")}
	for _, m := range []Message{
		Registration{Handle: "echo", PE: pe},
		Registration{Handle: "echo", PE: pri},
		Registration{Handle: "echo", PE: lu},
		RegistrationResponse{Handle: "echo", PEID: 5},
		RegistrationResponse{Handle: "echo", PEID: 5, Reject: true, Cause: CauseInconsistentPolicy},
		Deregistration{Handle: "echo", PEID: 5},
		DeregistrationResponse{Handle: "echo", PEID: 5, Reject: true, Cause: CauseRejectionDueToSecurity},
		HandleResolution{Handle: "echo"},
		HandleResolution{Handle: "echo", MaxItems: 7},
		HandleResolutionResponse{Handle: "echo", PolicyType: 1, PEs: []PoolElement{pe, testPE(3)}},
		HandleResolutionResponse{Handle: "nope", Cause: CauseUnknownPoolHandle},
		EndpointKeepAlive{ServerID: 9, Handle: "echo", PEID: 5, Home: true},
		EndpointKeepAliveAck{Handle: "echo", PEID: 5},
		EndpointUnreachable{Handle: "echo", PEID: 5},
		ServerAnnounce{ServerID: 9, ASAP: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:3863")}},
		Presence{Header: h, Reply: true, Checksum: 0xbeef, Info: si},
		HandleTableRequest{Header: h, OwnOnly: true},
		HandleTableResponse{Header: h, More: true, Pools: []Pool{{Handle: "a", PEs: []PoolElement{pe}}, {Handle: "b", PEs: []PoolElement{testPE(4), testPE(5)}}}},
		HandleUpdate{Header: h, Action: DelPE, Handle: "echo", PE: pe},
		ListRequest{Header: h},
		ListResponse{Header: h, Servers: []ServerInfo{si, {ID: 3, ENRP: netip.MustParseAddrPort("[::1]:9902")}}},
		InitTakeover{Header: h, Target: 3},
		InitTakeoverAck{Header: h, Target: 3},
		TakeoverServer{Header: h, Target: 3},
	} {
		t.Run(m.msgName(), func(t *testing.T) {
			b, err := Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			proto := wire.ASAP
			switch m.(type) {
			case Presence, HandleTableRequest, HandleTableResponse, HandleUpdate, ListRequest, ListResponse,
				InitTakeover, InitTakeoverAck, TakeoverServer:
				proto = wire.ENRP
			}
			got, err := Decode(proto, b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", got, m)
			}
		})
	}
}

func TestDecodeRejectsRegistrationWithoutPE(t *testing.T) {
	w := wire.Message{Protocol: wire.ASAP, Type: wire.ASAPRegistration, Params: []wire.Param{wire.PoolHandleParam([]byte("x"))}}
	b, err := w.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(wire.ASAP, b); err == nil {
		t.Fatal("registration without pool element decoded")
	}
}
