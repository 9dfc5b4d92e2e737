package bpf_test

import (
	"encoding/binary"
	"net"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/rspxdp/rspxdp/internal/netns"
	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/loader/loadertest"
)

// v6WithExt builds an IPv6 TCP segment src -> dst behind the given
// extension headers (each already encoded, its first byte the next header).
func v6WithExt(t *testing.T, src, dst netip.AddrPort, first layers.IPProtocol, ext ...[]byte) []byte {
	t.Helper()
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: first, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
	var payload []byte
	for _, e := range ext {
		payload = append(payload, e...)
	}
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp, src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	tcp[12], tcp[13] = 5<<4, 0x02 // SYN
	return serialize(t, &layers.Ethernet{SrcMAC: cliMAC, DstMAC: vipMAC, EthernetType: layers.EthernetTypeIPv6}, ip, gopacket.Payload(append(payload, tcp...)))
}

// TestLbControlPorts: packets to the control ports (the registrar's ASAP and
// ENRP ports) arriving on the balancer's interfaces are dropped and counted
// unless they come from a control network, over every transport and family,
// also as first fragments and behind IPv6 extension headers; other ports,
// VIPs and allowed sources are untouched.
func TestLbControlPorts(t *testing.T) {
	e := newEnv(t, func(o *loader.Options) {
		o.ControlPorts = []uint16{3863, 9901}
		o.ControlNetworks = []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fc00:c::/32")}
	})
	node4 := netip.MustParseAddr("192.0.2.1")
	node6 := netip.MustParseAddr("fc00:1::9")
	asap4, enrp4 := netip.AddrPortFrom(node4, 3863), netip.AddrPortFrom(node4, 9901)
	asap6, enrp6 := netip.AddrPortFrom(node6, 3863), netip.AddrPortFrom(node6, 9901)
	ctl4 := netip.MustParseAddrPort("10.1.2.3:40000")
	ctl6 := netip.MustParseAddrPort("[fc00:c::5]:40000")

	firstFrag := synFrame(t, client4, asap4)
	firstFrag[14+6] |= 0x20 // more fragments, offset 0
	firstFrag[14+6] &^= 0x40
	laterFrag := frame(t, client4, asap4, loader.TCP, nil)
	laterFrag[14+6], laterFrag[14+7] = 0x00, 0x10 // offset 128, no ports in it
	dstOpts := []byte{byte(layers.IPProtocolTCP), 0, 1, 4, 0, 0, 0, 0}
	frag6First := []byte{byte(layers.IPProtocolTCP), 0, 0, 1, 0, 0, 0, 9} // offset 0, more
	frag6Later := []byte{byte(layers.IPProtocolTCP), 0, 0, 0x81, 0, 0, 0, 9}

	cases := []struct {
		name string
		in   []byte
		want uint32
	}{
		{"v4 tcp SYN to ASAP", synFrame(t, client4, asap4), xdpDrop},
		{"v4 tcp to ENRP", frame(t, client4, enrp4, loader.TCP, nil), xdpDrop},
		{"v4 udp to ASAP", frame(t, client4, asap4, loader.UDP, nil), xdpDrop},
		{"v4 sctp to ENRP", frame(t, client4, enrp4, loader.SCTP, nil), xdpDrop},
		{"v6 tcp to ASAP", synFrame(t, client6, asap6), xdpDrop},
		{"v6 udp to ENRP", frame(t, client6, enrp6, loader.UDP, nil), xdpDrop},
		{"v6 sctp to ASAP", frame(t, client6, asap6, loader.SCTP, nil), xdpDrop},
		{"v4 first fragment to ASAP", firstFrag, xdpDrop},
		{"v6 destination options to ASAP", v6WithExt(t, client6, asap6, layers.IPProtocolIPv6Destination, dstOpts), xdpDrop},
		{"v6 first fragment to ENRP", v6WithExt(t, client6, enrp6, layers.IPProtocolIPv6Fragment, frag6First), xdpDrop},
		{"v6 hop-by-hop, fragment to ASAP", v6WithExt(t, client6, asap6, layers.IPProtocolIPv6HopByHop, []byte{byte(layers.IPProtocolIPv6Fragment), 0, 1, 4, 0, 0, 0, 0}, frag6First), xdpDrop},
		{"v4 later fragment (no ports)", laterFrag, xdpPass},
		{"v6 later fragment (no ports)", v6WithExt(t, client6, enrp6, layers.IPProtocolIPv6Fragment, frag6Later), xdpPass},
		{"v4 control network to ASAP", synFrame(t, ctl4, asap4), xdpPass},
		{"v4 control network to ENRP over udp", frame(t, ctl4, enrp4, loader.UDP, nil), xdpPass},
		{"v6 control network to ENRP", synFrame(t, ctl6, enrp6), xdpPass},
		{"v4 client to another port", synFrame(t, client4, netip.AddrPortFrom(node4, 22)), xdpPass},
		{"v6 client to another port", synFrame(t, client6, netip.AddrPortFrom(node6, 22)), xdpPass},
		{"v4 client from port 3863", synFrame(t, netip.AddrPortFrom(client4.Addr(), 3863), netip.AddrPortFrom(node4, 22)), xdpPass},
		{"v4 client to a VIP", synFrame(t, client4, svcTCP4.VIP), xdpTX},
	}
	drops := uint64(0)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ret, _ := e.run(t, c.in)
			if ret != c.want {
				t.Fatalf("verdict %d, want %d", ret, c.want)
			}
		})
		if c.want == xdpDrop {
			drops++
		}
	}
	st := e.stats(t)
	if st.Drops.Control != drops || st.Drops.BadHeader != 0 {
		t.Errorf("drops %+v, want %d control drops and no bad header", st.Drops, drops)
	}

	// A reload swaps the control networks: the old one is refused now.
	if err := e.l.SetControlNetworks([]netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}); err != nil {
		t.Fatal(err)
	}
	if ret, _ := e.run(t, synFrame(t, client4, asap4)); ret != xdpPass {
		t.Errorf("client in the new control network: verdict %d, want XDP_PASS", ret)
	}
	if ret, _ := e.run(t, synFrame(t, ctl4, asap4)); ret != xdpDrop {
		t.Errorf("source of a removed control network: verdict %d, want XDP_DROP", ret)
	}
}

// TestLbControlPortsOff: without control ports nothing is filtered (the
// loader alone, as the tests and benchmarks use it).
func TestLbControlPortsOff(t *testing.T) {
	e := newEnv(t, nil)
	if ret, _ := e.run(t, synFrame(t, client4, netip.MustParseAddrPort("192.0.2.1:3863"))); ret != xdpPass {
		t.Errorf("verdict %d, want XDP_PASS", ret)
	}
}

// TestLbRedirectsOtherInterface: a PE whose route leaves by another interface
// than the packet arrived on is redirected there (XDP_TX would put it on the
// wrong link), one behind the ingress interface goes out with XDP_TX, and a
// PE whose egress interface vanished from the device map is counted as
// undeliverable, not as sent.
func TestLbRedirectsOtherInterface(t *testing.T) {
	ns := netns.New(t, "lbredir")
	pinDir := loadertest.PinDir(t)
	// BPF_PROG_TEST_RUN gives packets the namespace's loopback as ingress.
	out, _, err := netns.Veth(ns, "pe0", ns, "pe1")
	if err != nil {
		t.Fatal(err)
	}
	peMAC := net.HardwareAddr{2, 0, 0, 0, 2, 1}
	outMAC := out.MAC
	near := netip.MustParseAddr("10.0.0.1") // behind the ingress interface
	far := netip.MustParseAddr("10.0.5.1")  // behind pe0
	res := loader.StaticResolver{
		near: {Ifindex: 1, SrcMAC: lbMAC, DstMAC: gwMAC},
		far:  {Ifindex: out.Index, SrcMAC: outMAC, DstMAC: peMAC},
	}
	svc := key("10.200.1.1:80", loader.TCP)
	err = ns.Do(func() error {
		l, err := loader.Open(loader.Options{PinDir: pinDir, SourceV4: src4, Resolver: res})
		if err != nil {
			return err
		}
		defer l.Close(false)
		if err := l.UpsertService(loader.Service{ServiceKey: svc}); err != nil {
			return err
		}
		run := func(in []byte) (uint32, []byte) {
			opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256)}
			ret, err := l.Program().Run(&opts)
			if err != nil {
				t.Fatalf("BPF_PROG_TEST_RUN: %v", err)
			}
			return ret, opts.DataOut
		}
		in := synFrame(t, client4, svc.VIP)
		for _, c := range []struct {
			name string
			pe   netip.Addr
			verd uint32
			dmac net.HardwareAddr
		}{
			{"PE behind the ingress interface", near, xdpTX, gwMAC},
			{"PE behind another interface", far, xdpRedirect, peMAC},
		} {
			if err := l.SetBackends(svc, []loader.Backend{{ID: 1, Addr: c.pe, Weight: 1, State: loader.Active}}); err != nil {
				return err
			}
			ret, got := run(in)
			if ret != c.verd {
				t.Errorf("%s: verdict %d, want %d", c.name, ret, c.verd)
			}
			if net.HardwareAddr(got[:6]).String() != c.dmac.String() {
				t.Errorf("%s: destination MAC %s, want %s", c.name, net.HardwareAddr(got[:6]), c.dmac)
			}
		}
		sent := func() uint64 {
			st, err := l.Stats()
			if err != nil {
				t.Fatal(err)
			}
			return st.Backends[svc][1].Packets
		}
		before := sent()
		// pe0 leaves the device map behind the loader's back (as when
		// the interface goes away).
		txp, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, "lb_tx_ports"), nil)
		if err != nil {
			return err
		}
		defer txp.Close()
		var slot, ifindex uint32
		it := txp.Iterate()
		for it.Next(&slot, &ifindex) {
			if int(ifindex) == out.Index {
				if err := txp.Delete(slot); err != nil {
					return err
				}
			}
		}
		if ret, _ := run(in); ret != xdpDrop {
			t.Errorf("PE whose interface left the device map: verdict %d, want XDP_DROP", ret)
		}
		st, err := l.Stats()
		if err != nil {
			return err
		}
		if st.Drops.Undeliverable != 1 {
			t.Errorf("undeliverable drops %d, want 1", st.Drops.Undeliverable)
		}
		if got := sent(); got != before {
			t.Errorf("an undeliverable packet counted as sent to the PE: %d -> %d", before, got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkLbControl measures the control-port filter on the path it adds
// to, packets that are not for a VIP, with BPF_PROG_TEST_RUN (these frames
// are passed or dropped, never rewritten, so repeated runs see the same
// packet and need no restoring wrapper). ns/run is the kernel's per-run
// time and includes the test-run floor: compare the rows of one run with
// each other. "filter off" has no control ports configured; the filter
// then still compares the port, so "filter on" for another port differs
// from it only in the configured values.
//
//	go test -run '^$' -bench BenchmarkLbControl -benchtime 3000000x -count 2 ./bpf/
func BenchmarkLbControl(b *testing.B) {
	node := netip.MustParseAddr("192.0.2.1")
	for _, c := range []struct {
		name  string
		ports []uint16
		src   netip.AddrPort
		dport uint16
	}{
		{"filter off, UDP to another port", nil, client4, 53},
		{"filter on, UDP to another port", []uint16{3863, 9901, 9464}, client4, 53},
		{"filter on, TCP SYN to ASAP dropped", []uint16{3863, 9901, 9464}, client4, 3863},
		{"filter on, TCP SYN to ASAP from a control net", []uint16{3863, 9901, 9464}, netip.MustParseAddrPort("10.1.2.3:40000"), 3863},
	} {
		b.Run(c.name, func(b *testing.B) {
			e := newEnv(b, func(o *loader.Options) {
				o.ConnTableSize = 4096
				o.ControlPorts = c.ports
				o.ControlNetworks = []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}
			})
			in := frame(b, c.src, netip.AddrPortFrom(node, c.dport), loader.UDP, nil)
			if c.dport == 3863 {
				in = synFrame(b, c.src, netip.AddrPortFrom(node, c.dport))
			}
			pinCPU(b)
			b.ResetTimer()
			ret, d, err := e.prog.Benchmark(in, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(d.Nanoseconds()), "ns/run")
			b.ReportMetric(float64(ret), "verdict")
		})
	}
}
