package msg_test

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/msg/msgtest"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
	"github.com/rspxdp/rspxdp/wire"
)

func TestCodecRoundTrip(t *testing.T) {
	pe := msgtest.PE(0x1234)
	pe.Home = 7
	pri := msgtest.PE(9)
	pri.Policy = policy.Priority(4)
	lu := msgtest.PE(10)
	lu.Policy = policy.LeastUsedDegradation(100, 5)
	h := msg.Header{Sender: 1, Receiver: 2}
	si := msg.ServerInfo{ID: 1, ENRP: netip.MustParseAddrPort("127.0.0.1:9901"), Protocol: selector.SCTP}
	sctpPE := msgtest.PE(11)
	sctpPE.ASAPProtocol = selector.SCTP
	for _, m := range []msg.Message{
		msg.Registration{Handle: "echo", PE: pe},
		msg.BusinessCard{Handle: "echo", PEs: []msg.PoolElement{pe, sctpPE}},
		msg.Registration{Handle: "echo", PE: pri},
		msg.Registration{Handle: "echo", PE: lu},
		msg.RegistrationResponse{Handle: "echo", PEID: 5},
		msg.RegistrationResponse{Handle: "echo", PEID: 5, Reject: true, Cause: msg.CauseInconsistentPolicy},
		msg.RegistrationResponse{Handle: "echo", PEID: 5, Reject: true, Cause: msg.CauseInconsistentPolicy,
			CauseInfo: msg.OffendingParam(msg.Registration{Handle: "echo", PE: pe}, msg.CauseInconsistentPolicy, false)},
		msg.Deregistration{Handle: "echo", PEID: 5},
		msg.DeregistrationResponse{Handle: "echo", PEID: 5, Reject: true, Cause: msg.CauseRejectionDueToSecurity},
		msg.HandleResolution{Handle: "echo"},
		msg.HandleResolution{Handle: "echo", MaxItems: 7},
		msg.HandleResolutionResponse{Handle: "echo", PolicyType: 1, PEs: []msg.PoolElement{pe, msgtest.PE(3)}},
		msg.HandleResolutionResponse{Handle: "nope", Cause: msg.CauseUnknownPoolHandle},
		msg.EndpointKeepAlive{ServerID: 9, Handle: "echo", PEID: 5, Home: true},
		msg.EndpointKeepAliveAck{Handle: "echo", PEID: 5},
		msg.EndpointUnreachable{Handle: "echo", PEID: 5},
		msg.ServerAnnounce{ServerID: 9, ASAP: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:3863")}, Protocol: selector.TCP},
		msg.ServerAnnounce{ServerID: 9, ASAP: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:3863")}, Protocol: selector.SCTP},
		msg.Presence{Header: h, Reply: true, Checksum: 0xbeef, Info: si},
		msg.HandleTableRequest{Header: h, OwnOnly: true},
		msg.HandleTableResponse{Header: h, More: true, Pools: []msg.Pool{{Handle: "a", PEs: []msg.PoolElement{pe}}, {Handle: "b", PEs: []msg.PoolElement{msgtest.PE(4), msgtest.PE(5)}}}},
		msg.HandleUpdate{Header: h, Action: msg.DelPE, Handle: "echo", PE: pe},
		msg.HandleUpdate{Header: h, Action: msg.DelPE, Handle: "echo", PE: pe, Drain: true},
		msg.HandleUpdate{Header: h, Action: msg.AddPE, Handle: "echo", PE: sctpPE},
		msg.ListRequest{Header: h},
		msg.ListResponse{Header: h, Servers: []msg.ServerInfo{si, {ID: 3, ENRP: netip.MustParseAddrPort("[::1]:9902"), Protocol: selector.TCP}}},
		msg.InitTakeover{Header: h, Target: 3},
		msg.InitTakeoverAck{Header: h, Target: 3},
		msg.TakeoverServer{Header: h, Target: 3},
	} {
		t.Run(msg.Name(m), func(t *testing.T) {
			b, err := msg.Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			proto := wire.ASAP
			switch m.(type) {
			case msg.Presence, msg.HandleTableRequest, msg.HandleTableResponse, msg.HandleUpdate, msg.ListRequest, msg.ListResponse,
				msg.InitTakeover, msg.InitTakeoverAck, msg.TakeoverServer:
				proto = wire.ENRP
			}
			got, err := msg.Decode(proto, b)
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
	if _, err := msg.Decode(wire.ASAP, b); err == nil {
		t.Fatal("registration without pool element decoded")
	}
}

// TestTransportParamKinds pins the transport parameter kinds on the wire:
// rsplib ignores a msg.Presence whose Server Information offers TCP when it
// speaks SCTP ("no usable ENRP endpoint addresses"), and refuses a msg.Pool
// Element without an ASAP transport ("invalid registrator").
func TestTransportParamKinds(t *testing.T) {
	enrpAddr := netip.MustParseAddrPort("10.99.0.1:9902")
	pe := msgtest.PE(0x42)
	pe.Home = 0x58
	pe.ASAP, pe.ASAPProtocol = netip.MustParseAddrPort("10.99.0.1:40000"), selector.SCTP
	h := msg.Header{Sender: 0x58, Receiver: 0x99}
	for _, tc := range []struct {
		name     string
		proto    wire.Protocol
		m        msg.Message
		wantKind wire.ParamType // of the Server Information or ASAP transport
		pes      int            // msg.Pool Elements that must carry an ASAP transport
	}{
		{"presence sctp", wire.ENRP, msg.Presence{Header: h, Info: msg.ServerInfo{ID: 0x58, ENRP: enrpAddr, Protocol: selector.SCTP}}, wire.ParamSCTPTransport, 0},
		{"presence tcp", wire.ENRP, msg.Presence{Header: h, Info: msg.ServerInfo{ID: 0x58, ENRP: enrpAddr, Protocol: selector.TCP}}, wire.ParamTCPTransport, 0},
		{"presence unset is tcp", wire.ENRP, msg.Presence{Header: h, Info: msg.ServerInfo{ID: 0x58, ENRP: enrpAddr}}, wire.ParamTCPTransport, 0},
		{"list response sctp", wire.ENRP, msg.ListResponse{Header: h, Servers: []msg.ServerInfo{{ID: 0x58, ENRP: enrpAddr, Protocol: selector.SCTP}}}, wire.ParamSCTPTransport, 0},
		{"handle update", wire.ENRP, msg.HandleUpdate{Header: h, Handle: "PoolX", PE: pe}, wire.ParamSCTPTransport, 1},
		{"handle table response", wire.ENRP, msg.HandleTableResponse{Header: h, Pools: []msg.Pool{{Handle: "PoolX", PEs: []msg.PoolElement{pe, pe}}}}, wire.ParamSCTPTransport, 2},
		{"handle resolution response", wire.ASAP, msg.HandleResolutionResponse{Handle: "PoolX", PolicyType: 1, PEs: []msg.PoolElement{pe}}, wire.ParamSCTPTransport, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := msg.Encode(tc.m)
			if err != nil {
				t.Fatal(err)
			}
			var w wire.Message
			if err := (&wire.Decoder{}).Decode(tc.proto, b, &w); err != nil {
				t.Fatal(err)
			}
			if tc.pes == 0 {
				s := w.Param(wire.ParamServerInformation)
				if s == nil {
					t.Fatal("no Server Information parameter")
				}
				if got := s.Server.Transport.Kind.Code(); got != tc.wantKind.Code() {
					t.Fatalf("Server Information transport kind %#x, want %#x", got, tc.wantKind.Code())
				}
				if got := firstAddrPort(s.Server.Transport); got != enrpAddr {
					t.Fatalf("Server Information address %v, want %v", got, enrpAddr)
				}
				return
			}
			n := 0
			for _, pl := range w.Pools() {
				for _, el := range pl.Elements {
					n++
					if got := el.ASAPTransport.Kind.Code(); got != tc.wantKind.Code() {
						t.Fatalf("PE %#x: ASAP transport kind %#x, want %#x", el.ID, got, tc.wantKind.Code())
					}
					if got := firstAddrPort(el.ASAPTransport); got != pe.ASAP {
						t.Fatalf("PE %#x: ASAP transport %v, want %v", el.ID, got, pe.ASAP)
					}
				}
			}
			if n != tc.pes {
				t.Fatalf("%d pool elements on the wire, want %d", n, tc.pes)
			}
		})
	}
}

func firstAddrPort(t wire.Transport) netip.AddrPort {
	if len(t.Addrs) == 0 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(t.Addrs[0], t.Port)
}
