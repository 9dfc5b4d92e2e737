package bpf_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/loader/loadertest"
)

// XDP verdicts.
const (
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

var (
	lbMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xaa}
	gwMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xbb}
	cliMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	vipMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	src4   = netip.MustParseAddr("192.0.2.254")
	src6   = netip.MustParseAddr("fc00:ff::1")

	client4 = netip.MustParseAddrPort("192.168.1.10:31337")
	client6 = netip.MustParseAddrPort("[fc00:2::10]:31337")

	svcTCP4  = key("10.200.1.1:80", loader.TCP)
	svcUDP4  = key("10.200.1.1:53", loader.UDP)
	svcSCTP4 = key("10.200.1.1:9899", loader.SCTP)
	svcTCP6  = key("[fc00:1::1]:80", loader.TCP)
	svcUDP6  = key("[fc00:1::1]:53", loader.UDP)
	svcSCTP6 = key("[fc00:1::1]:9899", loader.SCTP)
	svc4in6  = key("10.200.1.3:80", loader.TCP)
	svc6in4  = key("[fc00:1::3]:80", loader.TCP)
	svcL2    = key("10.200.1.2:80", loader.TCP)
	svcEmpty = key("10.200.1.4:80", loader.TCP)
)

func key(vip string, p loader.Proto) loader.ServiceKey {
	return loader.ServiceKey{VIP: netip.MustParseAddrPort(vip), Proto: p}
}

// peMAC gives L2 DSR PEs their own MAC so the test sees which one was chosen.
func peMAC(last byte) net.HardwareAddr { return net.HardwareAddr{0x02, 0, 0, 0, 1, last} }

func testResolver() loader.StaticResolver {
	r := loader.StaticResolver{
		netip.Addr{}: {Ifindex: 1, SrcMAC: lbMAC, DstMAC: gwMAC},
	}
	for i := byte(1); i <= 3; i++ {
		r[netip.AddrFrom4([4]byte{10, 0, 1, i})] = loader.NextHop{Ifindex: 1, SrcMAC: lbMAC, DstMAC: peMAC(i)}
	}
	return r
}

// lbEnv is a loaded balancer with the standard services of these tests.
type lbEnv struct {
	l    *loader.Loader
	prog *ebpf.Program
	// addr of each PE identifier, per service
	pes map[loader.ServiceKey]map[uint32]netip.Addr
}

func pes(base string, n int, firstID uint32) []loader.Backend {
	p := netip.MustParseAddr(base)
	out := make([]loader.Backend, n)
	for i := range out {
		out[i] = loader.Backend{ID: firstID + uint32(i), Addr: p, Weight: 1, State: loader.Active}
		p = p.Next()
	}
	return out
}

func newEnv(t testing.TB, mod func(*loader.Options)) *lbEnv {
	t.Helper()
	opts := loader.Options{
		PinDir:   loadertest.PinDir(t),
		SourceV4: src4,
		SourceV6: src6,
		Resolver: testResolver(),
		// Small: the default table (millions of flows) is allocated up
		// front, which these tests do not need.
		ConnTableSize: 1 << 18,
	}
	if mod != nil {
		mod(&opts)
	}
	l, err := loader.Open(opts)
	if err != nil {
		t.Fatalf("open loader: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(false); err != nil {
			t.Errorf("close loader: %v", err)
		}
	})
	e := &lbEnv{l: l, prog: l.Program(), pes: map[loader.ServiceKey]map[uint32]netip.Addr{}}
	e.service(t, loader.Service{ServiceKey: svcTCP4}, pes("10.0.0.1", 3, 1))
	e.service(t, loader.Service{ServiceKey: svcUDP4}, pes("10.0.0.1", 3, 11))
	e.service(t, loader.Service{ServiceKey: svcSCTP4}, pes("10.0.0.1", 3, 21))
	e.service(t, loader.Service{ServiceKey: svcTCP6}, pes("fc00:9::1", 3, 31))
	e.service(t, loader.Service{ServiceKey: svcUDP6}, pes("fc00:9::1", 3, 41))
	e.service(t, loader.Service{ServiceKey: svcSCTP6}, pes("fc00:9::1", 3, 51))
	e.service(t, loader.Service{ServiceKey: svc4in6}, pes("fc00:9::7", 1, 61))
	e.service(t, loader.Service{ServiceKey: svc6in4}, pes("10.0.0.7", 1, 71))
	e.service(t, loader.Service{ServiceKey: svcL2, L2DSR: true}, pes("10.0.1.1", 3, 81))
	e.service(t, loader.Service{ServiceKey: svcEmpty}, nil)
	return e
}

func (e *lbEnv) service(t testing.TB, s loader.Service, bes []loader.Backend) {
	t.Helper()
	if err := e.l.UpsertService(s); err != nil {
		t.Fatal(err)
	}
	e.setBackends(t, s.ServiceKey, bes)
}

func (e *lbEnv) setBackends(t testing.TB, k loader.ServiceKey, bes []loader.Backend) {
	t.Helper()
	if err := e.l.SetBackends(k, bes); err != nil {
		t.Fatal(err)
	}
	m := map[uint32]netip.Addr{}
	for _, b := range bes {
		m[b.ID] = b.Addr
	}
	e.pes[k] = m
}

func (e *lbEnv) run(t testing.TB, in []byte) (uint32, []byte) {
	t.Helper()
	opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256)}
	ret, err := e.prog.Run(&opts)
	if err != nil {
		t.Fatalf("BPF_PROG_TEST_RUN: %v", err)
	}
	return ret, opts.DataOut
}

// pick is the PE the installed ring gives a new flow, computed in Go: the
// data path must agree with it, which is what lets several nodes agree.
func (e *lbEnv) pick(t *testing.T, k loader.ServiceKey, src netip.AddrPort) uint32 {
	t.Helper()
	id, ok, err := e.l.Pick(k, loader.Flow{Src: src, Dst: k.VIP, Proto: k.Proto})
	if err != nil || !ok {
		t.Fatalf("pick %s from %s: ok=%v err=%v", k, src, ok, err)
	}
	return id
}

func (e *lbEnv) stats(t *testing.T) loader.Stats {
	t.Helper()
	st, err := e.l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return bytes.Clone(buf.Bytes())
}

// ipLayer returns the network layer for src -> dst with the given next
// protocol, and the Ethernet type to announce it.
func ipLayer(src, dst netip.Addr, proto layers.IPProtocol) (gopacket.NetworkLayer, layers.EthernetType) {
	if src.Is4() {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 1, Flags: layers.IPv4DontFragment,
			Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}, layers.EthernetTypeIPv4
	}
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto,
		SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}, layers.EthernetTypeIPv6
}

// frame builds a client frame with valid checksums; TCP segments are
// ACKs of an established connection.
func frame(t testing.TB, src, dst netip.AddrPort, proto loader.Proto, payload []byte) []byte {
	t.Helper()
	return buildFrame(t, src, dst, proto, payload, false)
}

// synFrame builds a TCP SYN: a connection attempt.
func synFrame(t testing.TB, src, dst netip.AddrPort) []byte {
	t.Helper()
	return buildFrame(t, src, dst, loader.TCP, nil, true)
}

func buildFrame(t testing.TB, src, dst netip.AddrPort, proto loader.Proto, payload []byte, syn bool) []byte {
	t.Helper()
	ip, et := ipLayer(src.Addr(), dst.Addr(), layers.IPProtocol(proto))
	eth := &layers.Ethernet{SrcMAC: cliMAC, DstMAC: vipMAC, EthernetType: et}
	var l4 gopacket.SerializableLayer
	switch proto {
	case loader.TCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: 1000, Ack: 5001, SYN: syn, ACK: !syn, Window: 65535}
		tcp.SetNetworkLayerForChecksum(ip)
		l4 = tcp
	case loader.UDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
		udp.SetNetworkLayerForChecksum(ip)
		l4 = udp
	case loader.SCTP:
		l4 = &layers.SCTP{SrcPort: layers.SCTPPort(src.Port()), DstPort: layers.SCTPPort(dst.Port()), VerificationTag: 0x01020304}
	default:
		t.Fatalf("frame: protocol %d", proto)
	}
	return serialize(t, eth, ip.(gopacket.SerializableLayer), l4, gopacket.Payload(payload))
}

// encapsulated is the frame the balancer must emit for in sent to pe.
func encapsulated(t testing.TB, in []byte, pe netip.Addr, dmac net.HardwareAddr) []byte {
	t.Helper()
	// Ethernet padding stays behind the packet, outside the outer length.
	innerProto := layers.IPProtocolIPv4
	if binary.BigEndian.Uint16(in[12:]) == uint16(layers.EthernetTypeIPv6) {
		innerProto = layers.IPProtocolIPv6
	}
	ipLen := l3Len(in)
	inner, pad := in[14:14+ipLen], in[14+ipLen:]
	var outer gopacket.SerializableLayer
	et := layers.EthernetTypeIPv4
	if pe.Is4() {
		outer = &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: innerProto, SrcIP: src4.AsSlice(), DstIP: pe.AsSlice()}
	} else {
		et = layers.EthernetTypeIPv6
		outer = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: innerProto, SrcIP: src6.AsSlice(), DstIP: pe.AsSlice()}
	}
	return append(serialize(t, &layers.Ethernet{SrcMAC: lbMAC, DstMAC: dmac, EthernetType: et}, outer, gopacket.Payload(inner)), pad...)
}

// l3Len is the IP packet length a frame announces.
func l3Len(in []byte) int {
	if binary.BigEndian.Uint16(in[12:]) == uint16(layers.EthernetTypeIPv6) {
		return 40 + int(binary.BigEndian.Uint16(in[18:]))
	}
	return int(binary.BigEndian.Uint16(in[16:]))
}

// checkOuter verifies the outer IPv4 header checksum independently of the
// expected bytes (IPv6 has none).
func checkOuter(t *testing.T, out []byte) {
	t.Helper()
	if binary.BigEndian.Uint16(out[12:]) != uint16(layers.EthernetTypeIPv4) {
		return
	}
	var sum uint32
	for i := 14; i < 34; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(out[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	if sum != 0xffff {
		t.Errorf("outer IPv4 header checksum wrong: sum %#x", sum)
	}
}

func expectFrame(t *testing.T, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("output frame differs\n got %s\nwant %s", hex.EncodeToString(got), hex.EncodeToString(want))
	}
}

// TestLbForward runs a new flow and then its second packet through every
// protocol and address family combination, checking the exact output frame
// and the connection table hit/miss accounting.
func TestLbForward(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		name string
		svc  loader.ServiceKey
		src  netip.AddrPort
	}{
		{"v4 tcp", svcTCP4, client4},
		{"v4 udp", svcUDP4, client4},
		{"v4 sctp", svcSCTP4, client4},
		{"v6 tcp", svcTCP6, client6},
		{"v6 udp", svcUDP6, client6},
		{"v6 sctp", svcSCTP6, client6},
		{"v4 in v6", svc4in6, client4},
		{"v6 in v4", svc6in4, client6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// TCP opens with a SYN; the second packet is then an ACK.
			first := frame(t, c.src, c.svc.VIP, c.svc.Proto, []byte("rspxdp fixture"))
			in := first
			if c.svc.Proto == loader.TCP {
				first = synFrame(t, c.src, c.svc.VIP)
			}
			peID := e.pick(t, c.svc, c.src)
			want := encapsulated(t, in, e.pes[c.svc][peID], gwMAC)
			before := e.stats(t)

			ret, out := e.run(t, first)
			if ret != xdpTX {
				t.Fatalf("first packet: verdict %d, want XDP_TX", ret)
			}
			expectFrame(t, out, encapsulated(t, first, e.pes[c.svc][peID], gwMAC))
			checkOuter(t, out)
			mid := e.stats(t)
			if mid.ConnMisses != before.ConnMisses+1 || mid.ConnHits != before.ConnHits {
				t.Errorf("first packet: misses %d->%d hits %d->%d, want one miss", before.ConnMisses, mid.ConnMisses, before.ConnHits, mid.ConnHits)
			}
			if got := mid.Backends[c.svc][peID].NewFlows - before.Backends[c.svc][peID].NewFlows; got != 1 {
				t.Errorf("new flows of PE %d: +%d, want +1", peID, got)
			}

			ret, out = e.run(t, in)
			if ret != xdpTX {
				t.Fatalf("second packet: verdict %d, want XDP_TX", ret)
			}
			expectFrame(t, out, want)
			after := e.stats(t)
			if after.ConnHits != mid.ConnHits+1 || after.ConnMisses != mid.ConnMisses {
				t.Errorf("second packet: hits %d->%d misses %d->%d, want one hit", mid.ConnHits, after.ConnHits, mid.ConnMisses, after.ConnMisses)
			}
			pkts := after.Services[c.svc].Packets - before.Services[c.svc].Packets
			byts := after.Services[c.svc].Bytes - before.Services[c.svc].Bytes
			// Bytes count IP packets, without Ethernet header or padding.
			if wantB := uint64(l3Len(first) + l3Len(in)); pkts != 2 || byts != wantB {
				t.Errorf("service counters: +%d packets +%d bytes, want +2 and +%d", pkts, byts, wantB)
			}
			pe := after.Backends[c.svc][peID]
			if pe.Packets-before.Backends[c.svc][peID].Packets != 2 {
				t.Errorf("PE %d packets: +%d, want +2", peID, pe.Packets-before.Backends[c.svc][peID].Packets)
			}
		})
	}
}

// TestLbBenchFrames checks the shared reference frames: SYN and ACK of one
// flow reach the same PE, the non-VIP datagram passes untouched.
func TestLbBenchFrames(t *testing.T) {
	e := newEnv(t, nil)
	frames := readBenchFrames(t)
	for _, fam := range []string{"v4", "v6"} {
		syn, ack := frames[fam+"_tcp_syn"], frames[fam+"_tcp_ack"]
		r1, o1 := e.run(t, syn)
		r2, o2 := e.run(t, ack)
		if r1 != xdpTX || r2 != xdpTX {
			t.Fatalf("%s: verdicts %d, %d, want XDP_TX", fam, r1, r2)
		}
		checkOuter(t, o1)
		if !bytes.Equal(o1[14:34], o2[14:34]) && fam == "v4" {
			t.Errorf("%s: SYN and ACK encapsulated differently", fam)
		}
		if !bytes.Equal(o1[len(o1)-len(syn)+14:], syn[14:]) {
			t.Errorf("%s: inner packet altered", fam)
		}
	}
	in := frames["v4_udp_nonvip"]
	ret, out := e.run(t, in)
	if ret != xdpPass {
		t.Fatalf("non-VIP: verdict %d, want XDP_PASS", ret)
	}
	expectFrame(t, out, in)
}

// TestLbPass: anything that is not a service flow passes untouched.
func TestLbPass(t *testing.T) {
	e := newEnv(t, nil)
	vip := svcTCP4.VIP
	frag := frame(t, client4, vip, loader.TCP, nil)
	frag[14+6] |= 0x20 // more fragments
	hopByHop := func() []byte {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6HopByHop,
			SrcIP: client6.Addr().AsSlice(), DstIP: svcTCP6.VIP.Addr().AsSlice()}
		hbh := []byte{6, 0, 1, 4, 0, 0, 0, 0}
		tcp := make([]byte, 20)
		binary.BigEndian.PutUint16(tcp, 31337)
		binary.BigEndian.PutUint16(tcp[2:], 80)
		return serialize(t, &layers.Ethernet{SrcMAC: cliMAC, DstMAC: vipMAC, EthernetType: layers.EthernetTypeIPv6}, ip, gopacket.Payload(append(hbh, tcp...)))
	}()
	echo := func() []byte {
		ip, et := ipLayer(client4.Addr(), vip.Addr(), layers.IPProtocolICMPv4)
		return serialize(t, &layers.Ethernet{SrcMAC: cliMAC, DstMAC: vipMAC, EthernetType: et}, ip.(gopacket.SerializableLayer),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 1})
	}()
	arp := serialize(t, &layers.Ethernet{SrcMAC: cliMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: 1, SourceHwAddress: cliMAC, SourceProtAddress: client4.Addr().AsSlice(),
			DstHwAddress: make([]byte, 6), DstProtAddress: vip.Addr().AsSlice()})
	cases := []struct {
		name string
		in   []byte
	}{
		{"v4 other address", frame(t, client4, netip.MustParseAddrPort("10.99.0.2:80"), loader.TCP, nil)},
		{"v4 VIP other port", frame(t, client4, netip.AddrPortFrom(vip.Addr(), 81), loader.TCP, nil)},
		{"v4 VIP other protocol", frame(t, client4, vip, loader.UDP, nil)},
		{"v6 other address", frame(t, client6, netip.MustParseAddrPort("[fc00:1::99]:80"), loader.TCP, nil)},
		{"v6 VIP other port", frame(t, client6, netip.AddrPortFrom(svcTCP6.VIP.Addr(), 81), loader.TCP, nil)},
		{"v4 fragment to VIP", frag},
		{"v6 extension header to VIP", hopByHop},
		{"ICMP echo to VIP", echo},
		{"ARP for VIP", arp},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ret, out := e.run(t, c.in)
			if ret != xdpPass {
				t.Fatalf("verdict %d, want XDP_PASS", ret)
			}
			expectFrame(t, out, c.in)
		})
	}
	if n, err := e.l.ConnCount(); err != nil || n != 0 {
		t.Errorf("connection table holds %d entries (err %v), want 0", n, err)
	}
}

// TestLbMalformed: truncated or inconsistent headers must neither crash
// the verifier-checked program nor be forwarded; each counts as a bad header.
func TestLbMalformed(t *testing.T) {
	e := newEnv(t, nil)
	v4 := frame(t, client4, svcTCP4.VIP, loader.TCP, nil)
	v6 := frame(t, client6, svcTCP6.VIP, loader.TCP, nil)
	udp4 := frame(t, client4, svcUDP4.VIP, loader.UDP, nil)
	sctp6 := frame(t, client6, svcSCTP6.VIP, loader.SCTP, nil)
	mut := func(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }
	setTot := func(b []byte, n int) []byte { binary.BigEndian.PutUint16(b[16:], uint16(n)); return b }
	setPlen := func(b []byte, n int) []byte { binary.BigEndian.PutUint16(b[18:], uint16(n)); return b }
	cases := []struct {
		name string
		in   []byte
	}{
		{"v4 header truncated", v4[:14+12]},
		{"v4 ihl below 5", mut(v4, func(b []byte) []byte { b[14] = 0x44; return b })},
		{"v4 version not 4", mut(v4, func(b []byte) []byte { b[14] = 0x65; return b })},
		{"v4 total length beyond frame", mut(v4, func(b []byte) []byte { return setTot(b, 200) })},
		{"v4 total length below header", mut(v4, func(b []byte) []byte { return setTot(b, 12) })},
		{"v4 tcp header truncated", mut(v4[:14+20+10], func(b []byte) []byte { return setTot(b, 30) })},
		{"v4 udp header truncated", mut(udp4[:14+20+4], func(b []byte) []byte { return setTot(b, 24) })},
		{"v6 header truncated", v6[:14+30]},
		{"v6 payload length beyond frame", mut(v6, func(b []byte) []byte { return setPlen(b, 300) })},
		{"v6 tcp header truncated", mut(v6[:14+40+12], func(b []byte) []byte { return setPlen(b, 12) })},
		{"v6 sctp header truncated", mut(sctp6[:14+40+8], func(b []byte) []byte { return setPlen(b, 8) })},
	}
	before := e.stats(t).Drops.BadHeader
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ret, _ := e.run(t, c.in)
			if ret != xdpDrop {
				t.Fatalf("verdict %d, want XDP_DROP", ret)
			}
		})
	}
	if got := e.stats(t).Drops.BadHeader - before; got != uint64(len(cases)) {
		t.Errorf("bad header drops: +%d, want +%d", got, len(cases))
	}
	if n, _ := e.l.ConnCount(); n != 0 {
		t.Errorf("malformed packets created %d connection entries", n)
	}
}

// flowTo finds a client source port whose new flow the ring gives to PE id.
func (e *lbEnv) flowTo(t *testing.T, k loader.ServiceKey, client netip.Addr, id uint32) netip.AddrPort {
	t.Helper()
	return e.flowToFrom(t, k, client, id, 1024)
}

func (e *lbEnv) flowToFrom(t *testing.T, k loader.ServiceKey, client netip.Addr, id uint32, first uint16) netip.AddrPort {
	t.Helper()
	for port := first; port < 65535; port++ {
		src := netip.AddrPortFrom(client, port)
		if e.pick(t, k, src) == id {
			return src
		}
	}
	t.Fatalf("no source port maps to PE %d", id)
	return netip.AddrPort{}
}

// outerDst reads where an encapsulated frame goes.
func outerDst(t *testing.T, out []byte) netip.Addr {
	t.Helper()
	switch binary.BigEndian.Uint16(out[12:]) {
	case uint16(layers.EthernetTypeIPv4):
		return netip.AddrFrom4([4]byte(out[30:34]))
	case uint16(layers.EthernetTypeIPv6):
		return netip.AddrFrom16([16]byte(out[38:54]))
	}
	t.Fatalf("output is not IP: %x", out[:14])
	return netip.Addr{}
}

func withState(bes []loader.Backend, id uint32, s loader.State) []loader.Backend {
	out := append([]loader.Backend(nil), bes...)
	for i := range out {
		if out[i].ID == id {
			out[i].State = s
		}
	}
	return out
}

// TestLbDrainAndDown: a draining PE keeps its flow and gets no new one; a
// down PE's flow moves on its next packet, for both address families.
func TestLbDrainAndDown(t *testing.T) {
	for _, fam := range []struct {
		name   string
		svc    loader.ServiceKey
		client netip.Addr
		bes    []loader.Backend
	}{
		{"v4", svcTCP4, client4.Addr(), pes("10.0.0.1", 3, 1)},
		{"v6", svcTCP6, client6.Addr(), pes("fc00:9::1", 3, 31)},
	} {
		t.Run(fam.name, func(t *testing.T) {
			e := newEnv(t, nil)
			victim := fam.bes[0]
			old := e.flowTo(t, fam.svc, fam.client, victim.ID)
			oldFrame := frame(t, old, fam.svc.VIP, loader.TCP, nil)
			if _, out := e.run(t, oldFrame); outerDst(t, out) != victim.Addr {
				t.Fatalf("flow not on PE %d before draining", victim.ID)
			}

			e.setBackends(t, fam.svc, withState(fam.bes, victim.ID, loader.Draining))
			if ret, out := e.run(t, oldFrame); ret != xdpTX || outerDst(t, out) != victim.Addr {
				t.Fatalf("draining: established flow left PE %d (verdict %d)", victim.ID, ret)
			}
			before := e.stats(t).Backends[fam.svc][victim.ID].NewFlows
			for port := uint16(2000); port < 2300; port++ {
				ret, out := e.run(t, frame(t, netip.AddrPortFrom(fam.client, port), fam.svc.VIP, loader.TCP, nil))
				if ret != xdpTX {
					t.Fatalf("draining: new flow verdict %d", ret)
				}
				if outerDst(t, out) == victim.Addr {
					t.Fatalf("draining: new flow from port %d sent to draining PE", port)
				}
			}
			if after := e.stats(t).Backends[fam.svc][victim.ID].NewFlows; after != before {
				t.Errorf("draining PE got %d new flows", after-before)
			}
			// A new connection reusing a draining flow's 5-tuple opens with
			// a SYN: it is a new flow and must avoid the draining PE.
			{
				// Establish a second flow on the victim while it is active...
				e.setBackends(t, fam.svc, fam.bes)
				src := e.flowToFrom(t, fam.svc, fam.client, victim.ID, 40000)
				ack := frame(t, src, fam.svc.VIP, loader.TCP, nil)
				if _, out := e.run(t, ack); outerDst(t, out) != victim.Addr {
					t.Fatalf("setup: flow not on PE %d", victim.ID)
				}
				e.setBackends(t, fam.svc, withState(fam.bes, victim.ID, loader.Draining))
				// ...then the client reconnects from the same port.
				ret, out := e.run(t, synFrame(t, src, fam.svc.VIP))
				moved := outerDst(t, out)
				if ret != xdpTX || moved == victim.Addr {
					t.Fatalf("draining: SYN reusing a 5-tuple went to the draining PE (verdict %d)", ret)
				}
				if _, out := e.run(t, ack); outerDst(t, out) != moved {
					t.Errorf("draining: the reconnected flow's ACK went to %s, not %s", outerDst(t, out), moved)
				}
			}

			e.setBackends(t, fam.svc, withState(fam.bes, victim.ID, loader.Down))
			want := e.pes[fam.svc][e.pick(t, fam.svc, old)]
			rs := e.stats(t).Resteered
			ret, out := e.run(t, oldFrame)
			if ret != xdpTX || outerDst(t, out) == victim.Addr || outerDst(t, out) != want {
				t.Fatalf("down: flow sent to %s (verdict %d), want %s", outerDst(t, out), ret, want)
			}
			if got := e.stats(t).Resteered - rs; got != 1 {
				t.Errorf("resteered +%d, want +1", got)
			}
			// The moved flow is pinned again: its next packet is a hit.
			hits := e.stats(t).ConnHits
			if _, out := e.run(t, oldFrame); outerDst(t, out) != want {
				t.Errorf("down: moved flow did not stay on %s", want)
			}
			if e.stats(t).ConnHits != hits+1 {
				t.Errorf("down: moved flow's next packet was not a connection table hit")
			}

			// A PE removed from the set is as good as down for its flows.
			nextVictim := e.pick(t, fam.svc, old)
			var rest []loader.Backend
			for _, b := range withState(fam.bes, victim.ID, loader.Down) {
				if b.ID != nextVictim {
					rest = append(rest, b)
				}
			}
			e.setBackends(t, fam.svc, rest)
			if _, out := e.run(t, oldFrame); outerDst(t, out) == e.pes[fam.svc][nextVictim] || outerDst(t, out) == victim.Addr {
				t.Errorf("removed PE still gets its flow")
			}
		})
	}
}

// icmpTooBig builds the error a router sends to the VIP when the PE's reply
// of the client's flow is too big for the next link.
func icmpTooBig(t *testing.T, router netip.Addr, svc loader.ServiceKey, client netip.AddrPort) []byte {
	t.Helper()
	// The quoted packet: the PE's reply, from the VIP to the client.
	quoted := frame(t, svc.VIP, client, svc.Proto, make([]byte, 64))[14:]
	vip := svc.VIP.Addr()
	if vip.Is4() {
		quoted = quoted[:20+8]
		ip, et := ipLayer(router, vip, layers.IPProtocolICMPv4)
		ip.(*layers.IPv4).Flags = 0
		return serialize(t, &layers.Ethernet{SrcMAC: cliMAC, DstMAC: vipMAC, EthernetType: et}, ip.(gopacket.SerializableLayer),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4), Seq: 1400}, gopacket.Payload(quoted))
	}
	ip, et := ipLayer(router, vip, layers.IPProtocolICMPv6)
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(2, 0)}
	icmp.SetNetworkLayerForChecksum(ip)
	mtu := []byte{0, 0, 0x05, 0x00}
	return serialize(t, &layers.Ethernet{SrcMAC: cliMAC, DstMAC: vipMAC, EthernetType: et}, ip.(gopacket.SerializableLayer),
		icmp, gopacket.Payload(append(mtu, quoted...)))
}

// TestLbICMPTooBig: "fragmentation needed" and "packet too big" about a VIP
// flow reach the PE holding the flow, even when a fresh hash would choose
// another PE, and create no connection entry.
func TestLbICMPTooBig(t *testing.T) {
	for _, c := range []struct {
		name   string
		svc    loader.ServiceKey
		client netip.Addr
		router netip.Addr
		bes    []loader.Backend
	}{
		{"v4", svcTCP4, client4.Addr(), netip.MustParseAddr("198.51.100.1"), pes("10.0.0.1", 3, 1)},
		{"v6", svcTCP6, client6.Addr(), netip.MustParseAddr("2001:db8::1"), pes("fc00:9::1", 3, 31)},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			pinned := c.bes[1]
			cl := e.flowTo(t, c.svc, c.client, pinned.ID)
			if ret, _ := e.run(t, frame(t, cl, c.svc.VIP, c.svc.Proto, nil)); ret != xdpTX {
				t.Fatalf("flow verdict %d", ret)
			}
			// Draining moves the ring away from the PE: only the connection
			// entry still names it.
			e.setBackends(t, c.svc, withState(c.bes, pinned.ID, loader.Draining))
			conns, _ := e.l.ConnCount()
			in := icmpTooBig(t, c.router, c.svc, cl)
			ret, out := e.run(t, in)
			if ret != xdpTX {
				t.Fatalf("ICMP verdict %d, want XDP_TX", ret)
			}
			expectFrame(t, out, encapsulated(t, in, pinned.Addr, gwMAC))
			checkOuter(t, out)
			if got := e.stats(t).ICMPForwarded; got != 1 {
				t.Errorf("ICMP forwarded %d, want 1", got)
			}
			if n, _ := e.l.ConnCount(); n != conns {
				t.Errorf("ICMP created connection entries: %d -> %d", conns, n)
			}
			// The same error addressed to another host is not ours.
			stray := bytes.Clone(icmpTooBig(t, c.router, c.svc, cl))
			if c.svc.VIP.Addr().Is4() {
				stray[14+19] ^= 0x01 // destination address
			} else {
				stray[14+39] ^= 0x01
			}
			if ret, out := e.run(t, stray); ret != xdpPass || !bytes.Equal(out, stray) {
				t.Errorf("ICMP to a non-VIP address: verdict %d, want XDP_PASS untouched", ret)
			}
			// An error about an unknown flow goes where its hash points.
			other := netip.AddrPortFrom(c.client, 1)
			in = icmpTooBig(t, c.router, c.svc, other)
			ret, out = e.run(t, in)
			if ret != xdpTX || outerDst(t, out) != e.pes[c.svc][e.pick(t, c.svc, other)] {
				t.Fatalf("ICMP for an unknown flow: verdict %d to %s", ret, outerDst(t, out))
			}
		})
	}
}

// TestLbL2DSR: only the MACs change, towards the chosen PE.
func TestLbL2DSR(t *testing.T) {
	e := newEnv(t, nil)
	for port := uint16(5000); port < 5020; port++ {
		src := netip.AddrPortFrom(client4.Addr(), port)
		in := frame(t, src, svcL2.VIP, loader.TCP, []byte("l2"))
		id := e.pick(t, svcL2, src)
		want := bytes.Clone(in)
		copy(want[0:6], peMAC(e.pes[svcL2][id].As4()[3]))
		copy(want[6:12], lbMAC)
		ret, out := e.run(t, in)
		if ret != xdpTX {
			t.Fatalf("verdict %d, want XDP_TX", ret)
		}
		expectFrame(t, out, want)
	}
}

// TestLbDrops: no PE and too big are dropped and counted.
func TestLbDrops(t *testing.T) {
	e := newEnv(t, nil)
	if ret, _ := e.run(t, frame(t, client4, svcEmpty.VIP, loader.TCP, nil)); ret != xdpDrop {
		t.Errorf("service without PEs: verdict %d, want XDP_DROP", ret)
	}
	// 1480 bytes of IP fit a 1500-byte MTU after IPIP; 1481 do not.
	fits := frame(t, client4, svcTCP4.VIP, loader.TCP, make([]byte, 1480-40))
	if ret, _ := e.run(t, fits); ret != xdpTX {
		t.Errorf("1480-byte packet: verdict %d, want XDP_TX", ret)
	}
	big := frame(t, netip.AddrPortFrom(client4.Addr(), 9), svcTCP4.VIP, loader.TCP, make([]byte, 1481-40))
	if ret, _ := e.run(t, big); ret != xdpDrop {
		t.Errorf("1481-byte packet: verdict %d, want XDP_DROP", ret)
	}
	st := e.stats(t)
	if st.Drops.NoPE != 1 || st.Drops.TooBig != 1 {
		t.Errorf("drops: %+v, want one no-PE and one too-big", st.Drops)
	}
}

// TestLbFloodGuard: past the new-flow rate, flows are still forwarded but
// no longer inserted, so established entries cannot be evicted by a flood.
func TestLbFloodGuard(t *testing.T) {
	e := newEnv(t, func(o *loader.Options) { o.FloodLimit = 5 })
	pinCPU(t)
	for port := uint16(100); port < 110; port++ {
		ret, _ := e.run(t, frame(t, netip.AddrPortFrom(client4.Addr(), port), svcTCP4.VIP, loader.TCP, nil))
		if ret != xdpTX {
			t.Fatalf("flow %d: verdict %d, want XDP_TX (compute-only still forwards)", port, ret)
		}
	}
	n, err := e.l.ConnCount()
	if err != nil {
		t.Fatal(err)
	}
	st := e.stats(t)
	if n != 5 || st.FloodSkipped != 5 {
		t.Errorf("flood guard: %d entries, %d skipped; want 5 and 5", n, st.FloodSkipped)
	}
	// The first flows are established and keep hitting.
	hits := st.ConnHits
	e.run(t, frame(t, netip.AddrPortFrom(client4.Addr(), 100), svcTCP4.VIP, loader.TCP, nil))
	if e.stats(t).ConnHits != hits+1 {
		t.Errorf("established flow missed the connection table during the flood")
	}
	// A second later the window is over: the guard lets new flows in
	// again within the 16 new flows between its looks at the clock
	// (FLOOD_CLOCK_EVERY in lb.c).
	time.Sleep(1200 * time.Millisecond)
	for port := uint16(200); port < 216; port++ {
		e.run(t, frame(t, netip.AddrPortFrom(client4.Addr(), port), svcTCP4.VIP, loader.TCP, nil))
	}
	if after, err := e.l.ConnCount(); err != nil || after <= n {
		t.Errorf("a second after the flood: %d entries (err %v), want more than %d: the guard did not reopen", after, err, n)
	}
}

// TestLbRedirect: with Redirect set, packets leave through the device map
// slot of their PE's egress interface (here loopback) instead of XDP_TX.
func TestLbRedirect(t *testing.T) {
	e := newEnv(t, func(o *loader.Options) { o.Redirect = true })
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if lo.Index != 1 {
		t.Fatalf("loopback has ifindex %d; the test resolver names 1", lo.Index)
	}
	in := frame(t, client4, svcTCP4.VIP, loader.TCP, nil)
	ret, out := e.run(t, in)
	if ret != xdpRedirect {
		t.Fatalf("verdict %d, want XDP_REDIRECT", ret)
	}
	expectFrame(t, out, encapsulated(t, in, e.pes[svcTCP4][e.pick(t, svcTCP4, client4)], gwMAC))
}

// TestLbNodesAgree: two nodes given the same PE set and seed send every
// new flow to the same PE, although they learnt the PEs in another order
// and numbered their slots differently: what lets ECMP spread one VIP's
// flows over several rspxdp nodes.
func TestLbNodesAgree(t *testing.T) {
	open := func() *loader.Loader {
		l, err := loader.Open(loader.Options{PinDir: loadertest.PinDir(t), SourceV4: src4, SourceV6: src6, Resolver: testResolver()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close(false) })
		return l
	}
	a, b := open(), open()
	bes := pes("10.0.0.1", 7, 100)
	bes[2].Weight, bes[5].Weight = 3, 2
	// Node b first serves another pool, so its slot numbers differ.
	other := key("10.200.9.9:80", loader.TCP)
	if err := b.UpsertService(loader.Service{ServiceKey: other}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetBackends(other, pes("10.0.9.1", 5, 900)); err != nil {
		t.Fatal(err)
	}
	rev := append([]loader.Backend(nil), bes...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	for _, c := range []struct {
		l   *loader.Loader
		bes []loader.Backend
	}{{a, bes}, {b, rev}} {
		if err := c.l.UpsertService(loader.Service{ServiceKey: svcTCP4}); err != nil {
			t.Fatal(err)
		}
		if err := c.l.SetBackends(svcTCP4, c.bes); err != nil {
			t.Fatal(err)
		}
	}
	run := func(l *loader.Loader, in []byte) []byte {
		opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256)}
		if ret, err := l.Program().Run(&opts); err != nil || ret != xdpTX {
			t.Fatalf("run: verdict %d, %v", ret, err)
		}
		return opts.DataOut
	}
	used := map[netip.Addr]int{}
	for port := uint16(10000); port < 12000; port++ {
		in := synFrame(t, netip.AddrPortFrom(client4.Addr(), port), svcTCP4.VIP)
		da, db := outerDst(t, run(a, in)), outerDst(t, run(b, in))
		if da != db {
			t.Fatalf("flow from port %d: node a sends it to %s, node b to %s", port, da, db)
		}
		used[da]++
	}
	if len(used) != len(bes) {
		t.Errorf("flows reached %d of %d PEs", len(used), len(bes))
	}
}

// TestLbOuterSourcePerFlow: without a fixed source address the outer source
// varies per flow inside the configured prefixes (a PE's RSS then spreads
// the flows over its queues), is stable for a flow, and the outer IPv4
// checksum covers it.
func TestLbOuterSourcePerFlow(t *testing.T) {
	e := newEnv(t, func(o *loader.Options) {
		o.SourceV4, o.SourceV6 = netip.Addr{}, netip.Addr{}
		o.SourcePrefixV6 = netip.MustParsePrefix("fc00:ee::/64")
	})
	for _, c := range []struct {
		name   string
		svc    loader.ServiceKey
		client netip.Addr
		prefix netip.Prefix
	}{
		{"ipip", svcUDP4, client4.Addr(), loader.DefaultSourcePrefixV4},
		{"ip6ip6", svcUDP6, client6.Addr(), netip.MustParsePrefix("fc00:ee::/64")},
	} {
		t.Run(c.name, func(t *testing.T) {
			seen := map[netip.Addr]bool{}
			const flows = 64
			for port := uint16(5000); port < 5000+flows; port++ {
				in := frame(t, netip.AddrPortFrom(c.client, port), c.svc.VIP, c.svc.Proto, []byte("x"))
				ret, out := e.run(t, in)
				if ret != xdpTX {
					t.Fatalf("verdict %d", ret)
				}
				checkOuter(t, out)
				src := outerSrc(t, out)
				if !c.prefix.Contains(src) {
					t.Fatalf("outer source %s outside %s", src, c.prefix)
				}
				if _, again := e.run(t, in); outerSrc(t, again) != src {
					t.Fatalf("flow from port %d: outer source %s then %s", port, src, outerSrc(t, again))
				}
				seen[src] = true
			}
			if len(seen) < flows/2 {
				t.Errorf("%d flows used only %d outer sources", flows, len(seen))
			}
		})
	}
}

func outerSrc(t *testing.T, out []byte) netip.Addr {
	t.Helper()
	switch binary.BigEndian.Uint16(out[12:]) {
	case uint16(layers.EthernetTypeIPv4):
		return netip.AddrFrom4([4]byte(out[14+12 : 14+16]))
	case uint16(layers.EthernetTypeIPv6):
		return netip.AddrFrom16([16]byte(out[14+8 : 14+24]))
	}
	t.Fatalf("not an encapsulated frame")
	return netip.Addr{}
}

// TestLbRepeatedSYN: a SYN repeated on one 5-tuple keeps a single entry and
// its PE (the entry exists, so it is left alone rather than re-inserted).
func TestLbRepeatedSYN(t *testing.T) {
	e := newEnv(t, nil)
	syn := synFrame(t, client4, svcTCP4.VIP)
	var first netip.Addr
	for i := 0; i < 5; i++ {
		ret, out := e.run(t, syn)
		if ret != xdpTX {
			t.Fatalf("SYN %d: verdict %d", i, ret)
		}
		if i == 0 {
			first = outerDst(t, out)
		} else if outerDst(t, out) != first {
			t.Fatalf("SYN %d went to %s, the first to %s", i, outerDst(t, out), first)
		}
	}
	if n, err := e.l.ConnCount(); err != nil || n != 1 {
		t.Fatalf("connection table holds %d entries (%v), want 1", n, err)
	}
}
