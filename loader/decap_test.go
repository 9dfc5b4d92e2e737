package loader_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/loader/loadertest"
)

// XDP verdicts of BPF_PROG_TEST_RUN.
const (
	decapXDPDrop = 1
	decapXDPPass = 2
)

var (
	decapPE4   = netip.MustParseAddr("10.0.11.2")
	decapPE6   = netip.MustParseAddr("fd00:11::2")
	decapOther = netip.MustParseAddr("10.0.12.2")
	decapLB4   = netip.MustParseAddr("10.0.11.1")
	decapLB6   = netip.MustParseAddr("fd00:11::1")
	decapVIP4  = netip.MustParseAddr("10.99.0.1")
	decapVIP6  = netip.MustParseAddr("fd00:99::1")
	decapCli4  = netip.MustParseAddr("10.0.1.2")
	decapCli6  = netip.MustParseAddr("fd00:1::2")
	decapSrc   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xaa}
	decapDst   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x11}
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// innerTCP4 is the client's SYN to the VIP as the PE must receive it: an
// IPv4 packet without its Ethernet header.
func innerTCP4(t testing.TB) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 63, Protocol: layers.IPProtocolTCP, SrcIP: decapCli4.AsSlice(), DstIP: decapVIP4.AsSlice()}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 1, SYN: true, Window: 64240}
	tcp.SetNetworkLayerForChecksum(ip)
	return serialize(t, ip, tcp, gopacket.Payload("hello"))
}

func innerUDP6(t testing.TB) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 63, NextHeader: layers.IPProtocolUDP, SrcIP: decapCli6.AsSlice(), DstIP: decapVIP6.AsSlice()}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 9999}
	udp.SetNetworkLayerForChecksum(ip)
	return serialize(t, ip, udp, gopacket.Payload("query"))
}

// eth prefixes an L3 packet with an Ethernet header of the given type.
// (No padding to 60 bytes: the program must not care, and the expected
// output of a decapsulation is exactly header + inner packet.)
func eth(t testing.TB, typ layers.EthernetType, l3 []byte) []byte {
	f := append(append([]byte(nil), decapDst...), decapSrc...)
	f = binary.BigEndian.AppendUint16(f, uint16(typ))
	return append(f, l3...)
}

// outer4 is what the load balancer sends: an outer IPv4 header to dst
// carrying protocol proto (4 or 41) around inner.
func outer4(t testing.TB, dst netip.Addr, proto layers.IPProtocol, inner []byte) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: decapLB4.AsSlice(), DstIP: dst.AsSlice()}
	return eth(t, layers.EthernetTypeIPv4, serialize(t, ip, gopacket.Payload(inner)))
}

func outer6(t testing.TB, dst netip.Addr, next layers.IPProtocol, inner []byte) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: decapLB6.AsSlice(), DstIP: dst.AsSlice()}
	return eth(t, layers.EthernetTypeIPv6, serialize(t, ip, gopacket.Payload(inner)))
}

func openDecap(t testing.TB) *loader.Decap {
	t.Helper()
	testenv.RequireRoot(t)
	d, err := loader.OpenDecap(loader.DecapOptions{Addrs: []netip.Addr{decapPE4, decapPE6}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

// TestDecapFixtures runs hand-built frames through the program with
// BPF_PROG_TEST_RUN and compares verdict, output bytes and counters.
func TestDecapFixtures(t *testing.T) {
	d := openDecap(t)
	tcp4 := innerTCP4(t)
	udp6 := innerUDP6(t)
	plain4 := eth(t, layers.EthernetTypeIPv4, tcp4)
	plain6 := eth(t, layers.EthernetTypeIPv6, udp6)
	// An outer header whose length field claims less than its own size.
	badLen := outer4(t, decapPE4, layers.IPProtocolIPv4, tcp4)
	// Outer IPv4 with the more-fragments bit (and its checksum fixed up).
	frag := outer4(t, decapPE4, layers.IPProtocolIPv4, tcp4)
	frag[14+6] = 0x20
	fixSum(frag[14 : 14+20])
	badLen[14+2], badLen[14+3] = 0, 10
	fixSum(badLen[14 : 14+20])
	// An outer header with 4 bytes of options (three NOPs, end of list).
	opts := outer4(t, decapPE4, layers.IPProtocolIPv4, tcp4)
	opts = append(append(append([]byte(nil), opts[:14+20]...), 1, 1, 1, 0), opts[14+20:]...)
	opts[14] = 0x46
	binary.BigEndian.PutUint16(opts[14+2:], binary.BigEndian.Uint16(opts[14+2:])+4)
	fixSum(opts[14 : 14+24])
	// A corrupted outer header: one bit of the source address flipped.
	corrupt := outer4(t, decapPE4, layers.IPProtocolIPv4, tcp4)
	corrupt[14+12] ^= 0x01
	arp := serialize(t, &layers.Ethernet{SrcMAC: decapSrc, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: decapSrc, SourceProtAddress: decapLB4.AsSlice(),
			DstHwAddress: make([]byte, 6), DstProtAddress: decapPE4.AsSlice()})

	for _, tc := range []struct {
		name  string
		in    []byte
		rc    uint32
		out   []byte // nil: output must equal input
		delta loader.DecapStats
	}{
		{"v4-in-v4", outer4(t, decapPE4, layers.IPProtocolIPv4, tcp4), decapXDPPass, plain4,
			loader.DecapStats{DecapV4: 1, Bytes: uint64(len(tcp4))}},
		{"v6-in-v6", outer6(t, decapPE6, layers.IPProtocolIPv6, udp6), decapXDPPass, plain6,
			loader.DecapStats{DecapV6: 1, Bytes: uint64(len(udp6))}},
		{"v6-in-v4", outer4(t, decapPE4, layers.IPProtocolIPv6, udp6), decapXDPPass, plain6,
			loader.DecapStats{DecapV4: 1, Bytes: uint64(len(udp6))}},
		{"v4-in-v6", outer6(t, decapPE6, layers.IPProtocolIPv4, tcp4), decapXDPPass, plain4,
			loader.DecapStats{DecapV6: 1, Bytes: uint64(len(tcp4))}},
		{"v4-in-v4 with outer options", opts, decapXDPPass, plain4,
			loader.DecapStats{DecapV4: 1, Bytes: uint64(len(tcp4))}},
		{"plain v4 passes", plain4, decapXDPPass, nil, loader.DecapStats{Passed: 1}},
		{"plain v6 passes", plain6, decapXDPPass, nil, loader.DecapStats{Passed: 1}},
		{"arp passes", arp, decapXDPPass, nil, loader.DecapStats{Passed: 1}},
		{"ipip to another host passes", outer4(t, decapOther, layers.IPProtocolIPv4, tcp4), decapXDPPass, nil, loader.DecapStats{Passed: 1}},
		{"ethernet header only passes", plain4[:14], decapXDPPass, nil, loader.DecapStats{Passed: 1}},
		{"truncated outer v4 passes", outer4(t, decapPE4, layers.IPProtocolIPv4, tcp4)[:14+12], decapXDPPass, nil, loader.DecapStats{Passed: 1}},
		{"truncated outer v6 passes", outer6(t, decapPE6, layers.IPProtocolIPv6, udp6)[:14+30], decapXDPPass, nil, loader.DecapStats{Passed: 1}},
		{"truncated inner v4 drops", outer4(t, decapPE4, layers.IPProtocolIPv4, tcp4)[:14+20+12], decapXDPDrop, nil, loader.DecapStats{DropBad: 1}},
		{"truncated inner v6 drops", outer6(t, decapPE6, layers.IPProtocolIPv6, udp6)[:14+40+20], decapXDPDrop, nil, loader.DecapStats{DropBad: 1}},
		{"inner version mismatch drops", outer4(t, decapPE4, layers.IPProtocolIPv4, udp6), decapXDPDrop, nil, loader.DecapStats{DropBad: 1}},
		{"outer length too short drops", badLen, decapXDPDrop, nil, loader.DecapStats{DropBad: 1}},
		{"fragmented outer drops", frag, decapXDPDrop, nil, loader.DecapStats{DropFrag: 1}},
		{"bad outer checksum drops", corrupt, decapXDPDrop, nil, loader.DecapStats{DropBad: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := d.Stats()
			if err != nil {
				t.Fatal(err)
			}
			out := make([]byte, len(tc.in)+64)
			opts := &ebpf.RunOptions{Data: tc.in, DataOut: out}
			rc, err := d.Program().Run(opts)
			if err != nil {
				t.Fatal(err)
			}
			if rc != tc.rc {
				t.Fatalf("verdict %d, want %d", rc, tc.rc)
			}
			want := tc.out
			if want == nil {
				want = tc.in
			}
			if got := opts.DataOut; !bytes.Equal(got, want) {
				t.Errorf("output\n got %x\nwant %x", got, want)
			}
			if tc.out != nil {
				checkInner(t, opts.DataOut)
			}
			after, err := d.Stats()
			if err != nil {
				t.Fatal(err)
			}
			got := loader.DecapStats{
				DecapV4: after.DecapV4 - before.DecapV4, DecapV6: after.DecapV6 - before.DecapV6,
				Bytes: after.Bytes - before.Bytes, Passed: after.Passed - before.Passed,
				DropBad: after.DropBad - before.DropBad, DropFrag: after.DropFrag - before.DropFrag,
			}
			if got != tc.delta {
				t.Errorf("counters moved by %+v, want %+v", got, tc.delta)
			}
		})
	}
}

// checkInner verifies every checksum of a decapsulated frame, so the stack
// will accept it, and that it is addressed to the VIP.
func checkInner(t *testing.T, frame []byte) {
	t.Helper()
	l3 := frame[14:]
	var pseudo []byte
	var proto byte
	var l4 []byte
	switch binary.BigEndian.Uint16(frame[12:]) {
	case uint16(layers.EthernetTypeIPv4):
		hl := int(l3[0]&0xf) * 4
		if csum(l3[:hl]) != 0 {
			t.Errorf("inner IPv4 header checksum is wrong: %x", l3[:hl])
		}
		if a, _ := netip.AddrFromSlice(l3[16:20]); a != decapVIP4 {
			t.Errorf("inner destination %s, want the VIP %s", a, decapVIP4)
		}
		proto, l4 = l3[9], l3[hl:binary.BigEndian.Uint16(l3[2:])]
		pseudo = append(append([]byte(nil), l3[12:20]...), 0, proto)
	case uint16(layers.EthernetTypeIPv6):
		if a, _ := netip.AddrFromSlice(l3[24:40]); a != decapVIP6 {
			t.Errorf("inner destination %s, want the VIP %s", a, decapVIP6)
		}
		proto, l4 = l3[6], l3[40:40+binary.BigEndian.Uint16(l3[4:])]
		pseudo = append(append([]byte(nil), l3[8:40]...), 0, 0, 0, proto)
	default:
		t.Fatalf("inner ethertype %x", frame[12:14])
	}
	pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(l4)))
	if csum(append(pseudo, l4...)) != 0 {
		t.Errorf("inner protocol %d checksum is wrong", proto)
	}
}

// fixSum rewrites the checksum of an IPv4 header after a test changed it.
func fixSum(h []byte) {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], csum(h))
}

// csum is the Internet checksum of b; 0 over data that includes a correct
// checksum field.
func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// TestDecapAddrs checks that the address set decides what is decapsulated.
func TestDecapAddrs(t *testing.T) {
	d := openDecap(t)
	frame := outer4(t, decapOther, layers.IPProtocolIPv4, innerTCP4(t))
	run := func() []byte {
		out := make([]byte, len(frame)+64)
		opts := &ebpf.RunOptions{Data: frame, DataOut: out}
		if _, err := d.Program().Run(opts); err != nil {
			t.Fatal(err)
		}
		return opts.DataOut
	}
	if got := run(); len(got) != len(frame) {
		t.Fatalf("decapsulated a packet for an address not added (%d bytes out)", len(got))
	}
	if err := d.AddAddr(decapOther); err != nil {
		t.Fatal(err)
	}
	if got := run(); len(got) != len(frame)-20 {
		t.Fatalf("added address: %d bytes out, want %d", len(got), len(frame)-20)
	}
	if err := d.RemoveAddr(decapOther); err != nil {
		t.Fatal(err)
	}
	if got := run(); len(got) != len(frame) {
		t.Fatalf("removed address still decapsulated")
	}
	if err := d.AddAddr(netip.Addr{}); err == nil {
		t.Error("AddAddr accepted an invalid address")
	}
	if err := d.Attach("rspxdp-no-such-if"); err == nil {
		t.Error("Attach to a missing interface succeeded")
	}
}

// TestDecapUndoesLBEncap feeds the load balancer's output for a client's
// packet to the decapsulation program and expects the client's packet back,
// byte for byte from the IP header on, for every family combination the
// LB produces, with a fixed outer source and with the default per-flow one.
func TestDecapUndoesLBEncap(t *testing.T) {
	for _, src := range []struct {
		name   string
		v4, v6 netip.Addr
	}{{"fixed source", decapLB4, decapLB6}, {"per-flow source", netip.Addr{}, netip.Addr{}}} {
		t.Run(src.name, func(t *testing.T) { testDecapUndoesLBEncap(t, src.v4, src.v6) })
	}
}

func testDecapUndoesLBEncap(t *testing.T, src4, src6 netip.Addr) {
	d := openDecap(t)
	l, err := loader.Open(loader.Options{
		PinDir:        loadertest.PinDir(t),
		Resolver:      loader.StaticResolver{netip.Addr{}: {Ifindex: 1, SrcMAC: decapSrc, DstMAC: decapDst}},
		SourceV4:      src4,
		SourceV6:      src6,
		ConnTableSize: 1 << 18,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(false) })
	tcp4 := innerTCP4(t)
	udp6 := innerUDP6(t)
	for _, tc := range []struct {
		name  string
		svc   loader.ServiceKey
		pe    netip.Addr
		typ   layers.EthernetType
		inner []byte
	}{
		{"v4-in-v4", loader.ServiceKey{VIP: netip.AddrPortFrom(decapVIP4, 80), Proto: loader.TCP}, decapPE4, layers.EthernetTypeIPv4, tcp4},
		{"v6-in-v6", loader.ServiceKey{VIP: netip.AddrPortFrom(decapVIP6, 9999), Proto: loader.UDP}, decapPE6, layers.EthernetTypeIPv6, udp6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := l.UpsertService(loader.Service{ServiceKey: tc.svc}); err != nil {
				t.Fatal(err)
			}
			if err := l.SetBackends(tc.svc, []loader.Backend{{ID: 1, Addr: tc.pe, Weight: 1, State: loader.Active}}); err != nil {
				t.Fatal(err)
			}
			in := eth(t, tc.typ, tc.inner)
			out := make([]byte, len(in)+64)
			opts := &ebpf.RunOptions{Data: in, DataOut: out}
			rc, err := l.Program().Run(opts)
			if err != nil {
				t.Fatal(err)
			}
			if rc != 3 { // XDP_TX
				t.Fatalf("LB verdict %d, want XDP_TX", rc)
			}
			encap := opts.DataOut
			if len(encap) <= len(in) {
				t.Fatalf("LB did not encapsulate: %x", encap)
			}
			back := make([]byte, len(encap)+64)
			opts = &ebpf.RunOptions{Data: encap, DataOut: back}
			rc, err = d.Program().Run(opts)
			if err != nil {
				t.Fatal(err)
			}
			if rc != decapXDPPass {
				t.Fatalf("decap verdict %d, want XDP_PASS", rc)
			}
			if got := opts.DataOut; !bytes.Equal(got[12:], in[12:]) {
				t.Fatalf("round trip changed the packet\n got %x\nwant %x", got, in)
			}
		})
	}
}
