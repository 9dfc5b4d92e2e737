package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/rspxdp/rspxdp/internal/benchtable"
	"github.com/rspxdp/rspxdp/internal/netns"
	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/loader"
)

// The pps comparison sends to this UDP port of the IPv4 VIP.
const ppsPort = 9000

// ppsResult is one measured round.
type ppsResult struct {
	sent, delivered uint64
	window          time.Duration
}

func (r ppsResult) pps() float64 { return float64(r.delivered) / r.window.Seconds() }

// TestPPS compares packets per second through the LB namespace with the XDP
// load balancer (native, on veth), an nftables DNAT load balancer and HAProxy
// (a user-space UDP relay: its log-forward section, sampling 1 in 3 to each
// PE), all fed by the same bounded generator from the client namespace: one
// UDP flow sent with the kernel's XDP live-frame mode (see generator). Delivered packets are counted where they enter the PEs (by the
// decapsulation program, which also counts plain packets it passes), over
// the window in which they arrive. It prints a table with the ratios.
//
//	RSPXDP_PPS=1 go test -run TestPPS -v ./e2e
//
// RSPXDP_PPS_PACKETS (default 2000000) and RSPXDP_PPS_ROUNDS (default 3)
// bound each run; each round is also cut at 40 s.
func TestPPS(t *testing.T) {
	if os.Getenv("RSPXDP_PPS") == "" {
		t.Skip("packets-per-second comparison: set RSPXDP_PPS=1 to run it")
	}
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "nft", "nftables")
	testenv.RequireCommand(t, "haproxy", "haproxy")
	packets := envInt(t, "RSPXDP_PPS_PACKETS", 2_000_000)
	rounds := envInt(t, "RSPXDP_PPS_ROUNDS", 3)

	type variant struct {
		name  string
		setup func(t *testing.T, tp *topo)
		// atL0 counts and drops at the LB's ingress instead of the
		// PEs': the generator's own ceiling, for reference.
		atL0 bool
	}
	variants := []variant{
		{"xdp (rspxdp, native, IPIP)", setupXDP, false},
		{"nftables DNAT (jhash)", setupNft, false},
		{"haproxy 2.6 log-forward (UDP)", setupHAProxy, false},
		{"(generator ceiling: drop at l0)", func(*testing.T, *topo) {}, true},
	}
	// Every variant gets its own topology, all built up front, and the
	// rounds go round-robin over the variants: on a machine shared with
	// other work, load changes then hit every variant alike instead of
	// whichever happened to run at the time.
	type bench struct {
		tp *topo
		g  *generator
		sk *sink
	}
	benches := make([]bench, len(variants))
	for i, v := range variants {
		tp := newTopo(t)
		v.setup(t, tp)
		c0, err := tp.client.Iface("c0")
		if err != nil {
			t.Fatal(err)
		}
		l0, err := tp.lb.Iface("l0")
		if err != nil {
			t.Fatal(err)
		}
		benches[i] = bench{tp: tp, sk: newSink(t, tp, v.atL0), g: newGenerator(t, ppsFrame(t, c0.MAC, l0.MAC))}
	}
	results := map[string][]ppsResult{}
	for r := 0; r < rounds; r++ {
		for i, v := range variants {
			bn := benches[i]
			res := runGenerator(t, bn.tp, bn.g, bn.sk, uint64(packets))
			t.Logf("round %d, %s: sent %d, delivered %d in %v: %.0f pps", r+1, v.name, res.sent, res.delivered, res.window, res.pps())
			results[v.name] = append(results[v.name], res)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\npackets per second through the LB namespace (%d packets per round, %d rounds, 2 shared cores)\n", packets, rounds)
	fmt.Fprintf(&b, "%-38s %12s %12s %10s %14s %14s\n", "load balancer", "best pps", "median pps", "delivered", "xdp/this best", "xdp/this med.")
	var xdpBest, xdpMedian float64
	var rows []benchtable.Row
	for i, v := range variants {
		rs := results[v.name]
		if len(rs) == 0 {
			continue
		}
		pps := make([]float64, len(rs))
		var sent, got uint64
		for j, r := range rs {
			pps[j] = r.pps()
			sent += r.sent
			got += r.delivered
		}
		slices.Sort(pps)
		best, median := pps[len(pps)-1], pps[len(pps)/2]
		if i == 0 {
			xdpBest, xdpMedian = best, median
		}
		rBest, rMedian := "-", "-"
		if xdpBest > 0 && i > 0 {
			rBest = fmt.Sprintf("%.2fx", xdpBest/best)
			rMedian = fmt.Sprintf("%.2fx", xdpMedian/median)
		}
		fmt.Fprintf(&b, "%-38s %12.0f %12.0f %9.1f%% %14s %14s\n", v.name, best, median, 100*float64(got)/float64(sent), rBest, rMedian)
		note := fmt.Sprintf("best %.2f M/s, %.1f%% delivered", best/1e6, 100*float64(got)/float64(sent))
		if i > 0 && xdpMedian > 0 {
			note += fmt.Sprintf("; XDP is %.1fx this", xdpMedian/median)
		}
		rows = append(rows, benchtable.Row{
			Section:  fmt.Sprintf("packets/s through the LB namespace (veth, native XDP generator, %d packets x %d rounds, median)", packets, rounds),
			Path:     v.name,
			Workload: "one UDP flow, client ns -> LB ns -> PE ns",
			Value:    median, Unit: "pps", Note: note,
		})
	}
	t.Log(b.String())
	if err := benchtable.Append("20-pps.jsonl", rows); err != nil {
		t.Fatal(err)
	}
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// setupXDP installs the XDP load balancer with a UDP service on the IPv4
// VIP's pps port (IPIP to the PEs).
func setupXDP(t *testing.T, tp *topo) {
	lb := tp.openLB(t)
	k := loader.ServiceKey{VIP: netip.AddrPortFrom(vipV4, ppsPort), Proto: loader.UDP}
	if err := lb.l.UpsertService(loader.Service{ServiceKey: k}); err != nil {
		t.Fatal(err)
	}
	var bes []loader.Backend
	for i := 1; i <= numPEs; i++ {
		bes = append(bes, loader.Backend{ID: uint32(i), Addr: peAddr(i, false), Weight: 1, State: loader.Active})
	}
	if err := lb.ns.Do(func() error { return lb.l.SetBackends(k, bes) }); err != nil {
		t.Fatal(err)
	}
}

// passOnL0 attaches a pass-everything XDP program (the decapsulation
// program with no addresses) to l0: frames that xdp-trafficgen transmits
// with ndo_xdp_xmit are dropped by a veth whose peer has no XDP program.
func passOnL0(t *testing.T, tp *topo) {
	var d *loader.Decap
	if err := tp.lb.Do(func() error {
		var err error
		d, err = loader.OpenDecap(loader.DecapOptions{Interfaces: []string{"l0"}, Mode: loader.ModeNative})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
}

// setupNft makes the LB namespace's kernel a DNAT load balancer: flows to
// the VIP port are spread by a hash of source address and port, as the XDP
// LB's flow hash does; conntrack keeps each flow on its PE.
func setupNft(t *testing.T, tp *topo) {
	passOnL0(t, tp)
	rules := fmt.Sprintf(`table ip rspxdp_pps {
  chain nat { type nat hook prerouting priority dstnat; ip daddr %[1]s udp dport %[2]d dnat to jhash ip saddr . udp sport mod 3 map { 0 : %[3]s, 1 : %[4]s, 2 : %[5]s }; }
}
`, vipV4, ppsPort, peAddr(1, false), peAddr(2, false), peAddr(3, false))
	f := filepath.Join(t.TempDir(), "lb.nft")
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.lb.Run(context.Background(), "nft", "-f", f); err != nil {
		t.Fatal(err)
	}
}

// setupHAProxy runs HAProxy in the LB namespace with the VIP on its
// loopback, relaying datagrams to the PEs one in three each.
func setupHAProxy(t *testing.T, tp *topo) {
	passOnL0(t, tp)
	if err := tp.lb.AddAddr("lo", netip.PrefixFrom(vipV4, 32)); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global
    nbthread 2
log-forward pps
    dgram-bind %s:%d
    log %s:%d sample 1:3 local0
    log %s:%d sample 2:3 local0
    log %s:%d sample 3:3 local0
`, vipV4, ppsPort, peAddr(1, false), ppsPort, peAddr(2, false), ppsPort, peAddr(3, false), ppsPort)
	f := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	tp.lb.Start(t, "haproxy", "-db", "-f", f)
	// Wait for the bind.
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := tp.lb.Run(context.Background(), "ss", "-Hlun", "sport", "= :"+strconv.Itoa(ppsPort))
		if err == nil && strings.Contains(out, vipV4.String()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy did not bind: %q %v", out, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sink counts the packets that reach the PEs and drops them at once: the
// PEs' decapsulation program is swapped for it on e0, so that every
// variant's measurement ends at the same cheap point and what is compared
// is the LB namespace's work (the generator, the LB and the PEs' ingress
// all run on the sending CPU, in softirq context, on veth).
type sink struct {
	prog  *ebpf.Program
	count *ebpf.Map
}

func newSink(t *testing.T, tp *topo, atL0 bool) *sink {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "pps_count", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatalf("create sink counter: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "pps_sink",
		Type:    ebpf.XDP,
		License: "GPL",
		// IPv4 frames (the test traffic, plain or IPIP) are counted
		// and dropped; anything else, such as ARP, passes.
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // data
			asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // data_end
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, 14),
			asm.JGT.Reg(asm.R4, asm.R3, "pass"),
			asm.LoadMem(asm.R4, asm.R2, 12, asm.Half),
			asm.JNE.Imm(asm.R4, 0x0008, "pass"), // ETH_P_IP, big endian
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "drop"),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.Add.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, 1).WithSymbol("drop"), // XDP_DROP
			asm.Return(),
			asm.Mov.Imm(asm.R0, 2).WithSymbol("pass"), // XDP_PASS
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatalf("load sink program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	attach := func(ns *netns.NS, ifname string) {
		var lk link.Link
		if err := ns.Do(func() error {
			ifc, err := net.InterfaceByName(ifname)
			if err != nil {
				return err
			}
			lk, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
			return err
		}); err != nil {
			t.Fatalf("attach sink to %s in %s: %v", ifname, ns.Name, err)
		}
		t.Cleanup(func() { lk.Close() })
	}
	if atL0 {
		attach(tp.lb, "l0")
		return &sink{prog: prog, count: m}
	}
	for _, p := range tp.pes {
		// Inside the PE's namespace: the decap finds the interface by
		// index through netlink there.
		if err := p.ns.Do(func() error { return p.decap.Detach("e0") }); err != nil {
			t.Fatal(err)
		}
		attach(p.ns, "e0")
	}
	return &sink{prog: prog, count: m}
}

// delivered sums what reached the PEs.
func (s *sink) delivered(t *testing.T) uint64 {
	var per []uint64
	if err := s.count.Lookup(uint32(0), &per); err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n
}

// generator transmits copies of one frame out of an interface at kernel
// speed: BPF_PROG_RUN in live-frame mode (the kernel's own packet generator
// for XDP, what xdp-trafficgen uses) runs a program that returns XDP_TX, so
// each of Repeat runs sends the frame out of the interface named in the
// context. xdp-trafficgen 1.3.1 itself does not load on this kernel (it
// attaches to the tracepoint xdp_redirect_map_err, which kernel 6.18 no
// longer has), hence this small equivalent.
//
// Live mode recycles each page without copying the frame in again, and the
// receivers write into it (nftables' DNAT rewrites the IP header in place,
// forwarding pushes a new Ethernet header, the LB encapsulates in the
// headroom), so the program first stores the original frame from a map.
type generator struct {
	prog  *ebpf.Program
	frame *ebpf.Map
	len   int
}

func newGenerator(t *testing.T, frame []byte) *generator {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "pps_frame", Type: ebpf.Array, KeySize: 4, ValueSize: uint32(len(frame)), MaxEntries: 1})
	if err != nil {
		t.Fatalf("create frame map: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := m.Update(uint32(0), frame, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "pps_gen",
		Type:    ebpf.XDP,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Reg(asm.R6, asm.R1),
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "drop"),
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.Mov.Imm(asm.R2, 0),
			asm.Mov.Reg(asm.R3, asm.R0),
			asm.Mov.Imm(asm.R4, int32(len(frame))),
			asm.FnXdpStoreBytes.Call(),
			asm.Mov.Imm(asm.R0, 3), // XDP_TX
			asm.Return(),
			asm.Mov.Imm(asm.R0, 1).WithSymbol("drop"), // XDP_DROP
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatalf("load generator program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	return &generator{prog: prog, frame: m, len: len(frame)}
}

// xdpMD is the kernel's struct xdp_md, the context of a live-frame run.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// send transmits n copies of the frame out of ifindex of the calling
// thread's namespace (call it inside NS.Do).
func (g *generator) send(ifindex int, n uint32) error {
	_, err := g.prog.Run(&ebpf.RunOptions{
		Data:    make([]byte, g.len),
		Context: xdpMD{DataEnd: uint32(g.len), IngressIfindex: uint32(ifindex)},
		Repeat:  n,
		Flags:   unix.BPF_F_TEST_XDP_LIVE_FRAMES,
	})
	return err
}

// ppsFrame is the generated packet: one UDP flow from the client to the
// VIP's pps port, its payload a syslog message (what HAProxy's log-forward
// relays), 64 bytes on the wire before the FCS.
func ppsFrame(t *testing.T, src, dst net.HardwareAddr) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: clientV4.AsSlice(), DstIP: vipV4.AsSlice()}
	udp := &layers.UDP{SrcPort: 40000, DstPort: ppsPort}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}, ip, udp,
		gopacket.Payload("<134>rspxdp pps probe"))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// runGenerator sends n packets from c0 to the VIP and measures the delivery
// rate over the window in which packets arrived at the PEs, sampled every
// 10 ms.
func runGenerator(t *testing.T, tp *topo, g *generator, sk *sink, n uint64) ppsResult {
	t.Helper()
	c0, err := tp.client.Iface("c0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	start := sk.delivered(t)
	done := make(chan error, 1)
	go func() {
		done <- tp.client.Do(func() error { return g.send(c0.Index, uint32(n)) })
	}()

	type sample struct {
		at time.Time
		n  uint64
	}
	var first, last sample
	prev := sample{time.Now(), start}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	finished := false
	var quietSince time.Time
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("generator: %v", err)
			}
			finished = true
			done = nil
		case <-tick.C:
		}
		now := sample{time.Now(), sk.delivered(t)}
		if now.n > prev.n {
			if first.at.IsZero() {
				first = prev
			}
			last = now
			quietSince = time.Time{}
		} else if quietSince.IsZero() {
			quietSince = now.at
		}
		prev = now
		// Done once the generator returned and nothing arrived for 100 ms.
		if finished && !quietSince.IsZero() && now.at.Sub(quietSince) > 100*time.Millisecond {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("generator round did not finish in 40 s")
		}
	}
	if first.at.IsZero() {
		t.Fatal("no packet reached a PE")
	}
	return ppsResult{sent: n, delivered: last.n - start, window: last.at.Sub(first.at)}
}
