package enrp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/wire"
)

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
	if el == nil || el.ASAPTransport.Kind.Code() != wire.ParamSCTPTransport.Code() || netip.AddrPortFrom(el.ASAPTransport.Addrs[0], el.ASAPTransport.Port) != remote {
		t.Fatalf("Handle Update pool element %+v: want SCTP ASAP transport %v", el, remote)
	}
	// And so does the answer to a resolution.
	r := c.Resolve(HandleResolution{Handle: "p"})
	if len(r.PEs) != 1 || r.PEs[0].ASAP != remote || r.PEs[0].ASAPProtocol != selector.SCTP {
		t.Fatalf("resolution %+v: want the PE with ASAP %v over SCTP", r.PEs, remote)
	}
}
