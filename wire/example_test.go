package wire_test

import (
	"fmt"
	"net/netip"

	"github.com/rspxdp/rspxdp/wire"
)

// Encode an ASAP Registration of a pool element and decode it again.
func Example() {
	reg := &wire.Message{
		Protocol: wire.ASAP,
		Type:     wire.ASAPRegistration,
		Params: []wire.Param{
			wire.PoolHandleParam([]byte("EchoPool")),
			wire.PoolElementParam(wire.PoolElement{
				ID:       0x1234abcd,
				Lifetime: 300000,
				UserTransport: wire.Transport{
					Kind:  wire.ParamSCTPTransport,
					Port:  7,
					Use:   wire.UseDataPlusControl,
					Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")},
				},
				Policy: wire.Policy{Type: wire.PolicyWeightedRoundRobin, Weight: 3},
			}),
		},
	}
	b, err := reg.MarshalBinary()
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d bytes: % x\n", len(b), b[:4])

	var m wire.Message
	var dec wire.Decoder // zero value: default size and depth limits
	if err := dec.Decode(wire.ASAP, b, &m); err != nil {
		panic(err)
	}
	pe := m.PoolElement()
	fmt.Printf("%s of %q: PE %#x at %v port %d, policy %v weight %d\n",
		m.TypeName(), m.PoolHandle(), pe.ID, pe.UserTransport.Addrs[0], pe.UserTransport.Port,
		pe.Policy.Type, pe.Policy.Weight)
	// Output:
	// 60 bytes: 01 00 00 3c
	// Registration of "EchoPool": PE 0x1234abcd at 10.0.0.1 port 7, policy WRR weight 3
}
