package enrp

import (
	"net/netip"
	"testing"
)

func manyAddrs(n int, id uint32) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(id >> 8), byte(id), 14: byte(i >> 8), 15: byte(i)})
	}
	return out
}

// No message the registrar sends is longer than the 16-bit length allows
// (issue 19 item 7).
func TestMessagesFitTheLengthField(t *testing.T) {
	t.Run("registration past the address bound refused", func(t *testing.T) {
		c, _ := newTestCore(t, 1)
		for _, tc := range []struct {
			addrs  int
			reject bool
		}{{8186, true}, {MaxPEAddresses + 1, true}, {MaxPEAddresses, false}} {
			pe := testPE(uint32(tc.addrs))
			pe.Transport.Addrs = manyAddrs(tc.addrs, 1)
			r := msgsOf[RegistrationResponse](register(c, 10, "big", pe))
			if len(r) != 1 || r[0].Reject != tc.reject || (tc.reject && r[0].Cause != CauseInvalidValues) {
				t.Fatalf("%d addresses: %+v, want reject=%v", tc.addrs, r, tc.reject)
			}
		}
	})
	t.Run("handle table of 128 PEs of 70 addresses", func(t *testing.T) {
		c, _ := newTestCore(t, 1)
		for id := uint32(1); id <= 128; id++ {
			pe := testPE(id)
			pe.Transport.Addrs = manyAddrs(70, id)
			pe.Owner = "pe/a-rather-long-identity-name-for-the-owner-parameter"
			register(c, 10, "wide", pe)
		}
		hello(c, 2, 2)
		seen, more := 0, true
		for i := 0; more && i < 200; i++ {
			c.Step(2, netip.Addr{}, HandleTableRequest{Header: Header{Sender: 2, Receiver: 1}})
			resp := msgsOf[HandleTableResponse](c.Drain())
			if len(resp) != 1 {
				t.Fatalf("%d responses", len(resp))
			}
			b, err := Encode(resp[0])
			if err != nil {
				t.Fatalf("chunk %d does not encode: %v", i, err)
			}
			if len(b) > 65535 {
				t.Fatalf("chunk %d: %d bytes", i, len(b))
			}
			for _, p := range resp[0].Pools {
				seen += len(p.PEs)
			}
			more = resp[0].More
		}
		if seen != 128 {
			t.Fatalf("table carried %d PEs, want 128", seen)
		}
	})
	t.Run("resolve all of a 3,000-PE pool", func(t *testing.T) {
		c, _ := newTestCore(t, 1)
		for id := uint32(1); id <= 3000; id++ {
			pe := testPE(id)
			pe.Transport.Addrs = manyAddrs(2, id)
			register(c, 10, "huge", pe)
		}
		r := c.Resolve(HandleResolution{Handle: "huge", MaxItems: maxResolutionAll})
		b, err := Encode(r)
		if err != nil {
			t.Fatalf("answer does not encode: %v", err)
		}
		if len(r.PEs) == 0 || len(r.PEs) >= 3000 || len(b) > 65535 {
			t.Fatalf("%d PEs in %d bytes", len(r.PEs), len(b))
		}
		t.Logf("resolve-all answered with %d of 3000 PEs in %d bytes", len(r.PEs), len(b))
	})
}
