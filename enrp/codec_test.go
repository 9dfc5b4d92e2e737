package enrp

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/selector"
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
	si := ServerInfo{ID: 1, ENRP: netip.MustParseAddrPort("127.0.0.1:9901"), Protocol: selector.SCTP}
	sctpPE := testPE(11)
	sctpPE.ASAPProtocol = selector.SCTP
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
		ServerAnnounce{ServerID: 9, ASAP: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:3863")}, Protocol: selector.TCP},
		ServerAnnounce{ServerID: 9, ASAP: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:3863")}, Protocol: selector.SCTP},
		Presence{Header: h, Reply: true, Checksum: 0xbeef, Info: si},
		HandleTableRequest{Header: h, OwnOnly: true},
		HandleTableResponse{Header: h, More: true, Pools: []Pool{{Handle: "a", PEs: []PoolElement{pe}}, {Handle: "b", PEs: []PoolElement{testPE(4), testPE(5)}}}},
		HandleUpdate{Header: h, Action: DelPE, Handle: "echo", PE: pe},
		HandleUpdate{Header: h, Action: DelPE, Handle: "echo", PE: pe, Drain: true},
		HandleUpdate{Header: h, Action: AddPE, Handle: "echo", PE: sctpPE},
		ListRequest{Header: h},
		ListResponse{Header: h, Servers: []ServerInfo{si, {ID: 3, ENRP: netip.MustParseAddrPort("[::1]:9902"), Protocol: selector.TCP}}},
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

// TestTransportParamKinds pins the transport parameter kinds on the wire:
// rsplib ignores a Presence whose Server Information offers TCP when it
// speaks SCTP ("no usable ENRP endpoint addresses"), and refuses a Pool
// Element without an ASAP transport ("invalid registrator").
func TestTransportParamKinds(t *testing.T) {
	enrpAddr := netip.MustParseAddrPort("10.99.0.1:9902")
	pe := testPE(0x42)
	pe.Home = 0x58
	pe.ASAP, pe.ASAPProtocol = netip.MustParseAddrPort("10.99.0.1:40000"), selector.SCTP
	h := Header{Sender: 0x58, Receiver: 0x99}
	for _, tc := range []struct {
		name     string
		proto    wire.Protocol
		m        Message
		wantKind wire.ParamType // of the Server Information or ASAP transport
		pes      int            // Pool Elements that must carry an ASAP transport
	}{
		{"presence sctp", wire.ENRP, Presence{Header: h, Info: ServerInfo{ID: 0x58, ENRP: enrpAddr, Protocol: selector.SCTP}}, wire.ParamSCTPTransport, 0},
		{"presence tcp", wire.ENRP, Presence{Header: h, Info: ServerInfo{ID: 0x58, ENRP: enrpAddr, Protocol: selector.TCP}}, wire.ParamTCPTransport, 0},
		{"presence unset is tcp", wire.ENRP, Presence{Header: h, Info: ServerInfo{ID: 0x58, ENRP: enrpAddr}}, wire.ParamTCPTransport, 0},
		{"list response sctp", wire.ENRP, ListResponse{Header: h, Servers: []ServerInfo{{ID: 0x58, ENRP: enrpAddr, Protocol: selector.SCTP}}}, wire.ParamSCTPTransport, 0},
		{"handle update", wire.ENRP, HandleUpdate{Header: h, Handle: "PoolX", PE: pe}, wire.ParamSCTPTransport, 1},
		{"handle table response", wire.ENRP, HandleTableResponse{Header: h, Pools: []Pool{{Handle: "PoolX", PEs: []PoolElement{pe, pe}}}}, wire.ParamSCTPTransport, 2},
		{"handle resolution response", wire.ASAP, HandleResolutionResponse{Handle: "PoolX", PolicyType: 1, PEs: []PoolElement{pe}}, wire.ParamSCTPTransport, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Encode(tc.m)
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

// TestRegistrationGetsAssociationAddress: a PE registering without an ASAP
// transport (rsplib's rspserver) gets its association's address and the
// registrar's transport, which then reach peers in the Handle Update.
func TestRegistrationGetsAssociationAddress(t *testing.T) {
	remote := netip.MustParseAddrPort("10.99.0.1:41234")
	bare := testPE(7)
	bare.ASAP, bare.ASAPProtocol = netip.AddrPort{}, 0
	own := testPE(8)
	for _, tc := range []struct {
		name      string
		m         Message
		wantASAP  netip.AddrPort
		wantProto selector.Protocol
	}{
		{"without ASAP transport", Registration{Handle: "p", PE: bare}, remote, selector.SCTP},
		{"with its own ASAP transport", Registration{Handle: "p", PE: own}, own.ASAP, selector.TCP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := withASAPEndpoint(tc.m, remote, selector.SCTP).(Registration)
			if got.PE.ASAP != tc.wantASAP || got.PE.ASAPProtocol != tc.wantProto {
				t.Fatalf("ASAP %v/%d, want %v/%d", got.PE.ASAP, got.PE.ASAPProtocol, tc.wantASAP, tc.wantProto)
			}
		})
	}
	if m := withASAPEndpoint(HandleResolution{Handle: "p"}, remote, selector.SCTP); m != (HandleResolution{Handle: "p"}) {
		t.Fatalf("a resolution changed: %#v", m)
	}
}

// TestCoreAdvertisesItsTransport: a registrar over SCTP says so in its
// Presence, and a PE it registered reaches peers with its ASAP transport.
func TestCoreAdvertisesItsTransport(t *testing.T) {
	cfg := testConfig(1)
	cfg.Transport = selector.SCTP
	cfg.ENRP = netip.MustParseAddrPort("10.99.0.1:9902")
	now := time.Unix(1000, 0)
	c, err := NewCore(cfg, now)
	if err != nil {
		t.Fatal(err)
	}
	c.MarkSynced()
	hello(c, 2, 2)
	if p := c.presence(2, false); p.Info.Protocol != selector.SCTP {
		t.Fatalf("Presence transport %d, want SCTP", p.Info.Protocol)
	}
	remote := netip.MustParseAddrPort("10.99.0.1:41234")
	pe := testPE(7)
	pe.ASAP, pe.ASAPProtocol = netip.AddrPort{}, 0
	c.Step(9, remote.Addr(), withASAPEndpoint(Registration{Handle: "p", PE: pe}, remote, cfg.Transport))
	ups := msgsOf[HandleUpdate](c.Drain())
	if len(ups) != 1 {
		t.Fatalf("%d Handle Updates, want 1", len(ups))
	}
	b, err := Encode(ups[0])
	if err != nil {
		t.Fatal(err)
	}
	var w wire.Message
	if err := (&wire.Decoder{}).Decode(wire.ENRP, b, &w); err != nil {
		t.Fatal(err)
	}
	el := w.PoolElement()
	if el == nil || el.ASAPTransport.Kind.Code() != wire.ParamSCTPTransport.Code() || firstAddrPort(el.ASAPTransport) != remote {
		t.Fatalf("Handle Update pool element %+v: want SCTP ASAP transport %v", el, remote)
	}
	// And so does the answer to a resolution.
	r := c.Resolve(HandleResolution{Handle: "p"})
	if len(r.PEs) != 1 || r.PEs[0].ASAP != remote || r.PEs[0].ASAPProtocol != selector.SCTP {
		t.Fatalf("resolution %+v: want the PE with ASAP %v over SCTP", r.PEs, remote)
	}
}
