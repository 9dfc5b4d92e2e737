package bgpe2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/rspxdp/rspxdp/internal/e2etest"
	"github.com/rspxdp/rspxdp/internal/netns"
	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/loader/loadertest"
	"github.com/rspxdp/rspxdp/wire"
)

// The topology: the router namespace has two legs, one to the client and
// one on the server segment, a bridge in a switch namespace shared by the
// router, the nodes and the PEs.
//
//	client  e0 10.1.0.2 ── c0 10.1.0.1  router (BIRD, AS 65000)
//	                                     r0 10.0.0.1 ─┐
//	lb<i>   l0 10.0.0.1<i> [rspxdp node, AS 65001]   ├─ br0 (switch namespace)
//	pe<i>   e0 10.0.0.2<i> lo: VIP, XDP decap on e0  ─┘
//
// Every node announces the VIP 10.99.0.1/32 to BIRD, which installs one
// kernel route with a next hop per announcing node; the kernel hashes each
// flow's 5-tuple (fib_multipath_hash_policy=1) onto one of them. A node
// encapsulates the flow in IPIP to a PE chosen by Maglev and sends it back
// out of l0 (XDP_TX); the PE decapsulates in XDP and answers the client
// directly through the router (direct server return).
var (
	clientAddr = netip.MustParseAddr("10.1.0.2")
	routerCli  = netip.MustParseAddr("10.1.0.1")
	routerSrv  = netip.MustParseAddr("10.0.0.1")
	vip        = netip.MustParseAddr("10.99.0.1")
)

const (
	vipPort   = 7000
	pool      = "echo"
	numNodes  = 4 // three from the start, the fourth joins
	numPEs    = 3
	numConns  = 300
	metrics   = "127.0.0.1:9464"
	seed      = "0x5eed"
	holdTime  = 3 * time.Second
	drainTime = 1500 * time.Millisecond
)

func lbAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)}) }
func peAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, byte(20 + i)}) }

func TestMain(m *testing.M) {
	code := m.Run()
	e2etest.RemoveBinary()
	os.Exit(code)
}

func (w *world) scrape(i int) (e2etest.Metrics, error) { return e2etest.Scrape(w.lbs[i], metrics) }

func (w *world) mustScrape(t *testing.T, i int) e2etest.Metrics {
	t.Helper()
	m, err := w.scrape(i)
	must(t, err)
	return m
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// clearHash attaches a tc ingress program to a router interface that
// forgets the packet's hash. A veth hands the sending socket's random
// txhash on with the packet, and the kernel's multipath choice uses a hash
// it finds before computing one from the 5-tuple, so without this a flow
// would follow its socket's hash, which TCP re-rolls on every
// retransmission timeout, not its addresses and ports as behind a real NIC.
func clearHash(t *testing.T, ns *netns.NS, ifname string) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.FnSetHashInvalid.Call(), asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	must(t, err)
	t.Cleanup(func() { prog.Close() })
	ifc, err := ns.Iface(ifname)
	must(t, err)
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		t.Fatalf("attach tc program to %s: %v", ifname, err)
	}
	t.Cleanup(func() { l.Close() })
}

// waitPEs waits until node i's data plane holds n active PEs.
func (w *world) waitPEs(t *testing.T, i, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got float64
	for time.Now().Before(deadline) {
		if m, err := w.scrape(i); err == nil {
			if got = m.Sum("rspxdp_dataplane_pool_elements", `state="active"`); got == float64(n) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("node %d: %v active PEs in the data plane, want %d within %v", i, got, n, timeout)
}

// world is the running system.
type world struct {
	t        *testing.T
	bin      string
	sw, rt   *netns.NS
	cli      *netns.NS
	lbs      [numNodes + 1]*netns.NS
	swPorts  [numNodes + 1]link.Link // XDP on the switch side of each node's veth
	nodes    [numNodes + 1]*e2etest.Proc
	pes      [numPEs + 1]*netns.NS
	peProcs  [numPEs + 1]*e2etest.Proc
	birdSock string
}

const birdConf = `router id 10.0.0.1;
protocol device { scan time 1; }
protocol kernel {
	ipv4 { import none; export all; };
	merge paths yes;
	scan time 1;
}
{{range}}protocol bgp node{{i}} {
	local 10.0.0.1 as 65000;
	neighbor {{addr}} as 65001;
	hold time 3; keepalive time 1; connect retry time 1; error wait time 1, 2;
	ipv4 { import all; export none; };
}
{{end}}`

func birdConfig() string {
	head, rest, _ := strings.Cut(birdConf, "{{range}}")
	body, tail, _ := strings.Cut(rest, "{{end}}")
	var b strings.Builder
	b.WriteString(head)
	for i := 1; i <= numNodes; i++ {
		r := strings.NewReplacer("{{i}}", strconv.Itoa(i), "{{addr}}", lbAddr(i).String())
		b.WriteString(r.Replace(body))
	}
	b.WriteString(tail)
	return b.String()
}

func setup(t *testing.T) *world {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "iproute2")
	bird := testenv.RequireCommand(t, "bird", "bird2")
	testenv.RequireCommand(t, "birdc", "bird2")
	testenv.RequireCommand(t, "nft", "nftables")
	w := &world{t: t, bin: e2etest.Binary(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w.sw, w.rt, w.cli = netns.New(t, "bsw"), netns.New(t, "brt"), netns.New(t, "bcli")
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	must(t, w.sw.Netlink().LinkAdd(br))
	must(t, w.sw.LinkUp("br0"))
	port := func(ns *netns.NS, swName, name string, a netip.Addr) {
		t.Helper()
		_, _, err := netns.Veth(w.sw, swName, ns, name)
		must(t, err)
		l, err := w.sw.Netlink().LinkByName(swName)
		must(t, err)
		must(t, w.sw.Netlink().LinkSetMasterByIndex(l, br.Attrs().Index))
		must(t, ns.AddAddr(name, netip.PrefixFrom(a, 24)))
		// Full checksums: these packets cross XDP programs.
		must(t, ns.TxChecksumOff(ctx, name))
		must(t, w.sw.TxChecksumOff(ctx, swName))
	}

	// Router: forwarding, L4 ECMP hash, no reverse-path filter (replies
	// come from the VIP through the server segment).
	port(w.rt, "s-rt", "r0", routerSrv)
	_, _, err := netns.Veth(w.rt, "c0", w.cli, "e0")
	must(t, err)
	must(t, w.rt.AddAddr("c0", netip.PrefixFrom(routerCli, 24)))
	must(t, w.cli.AddAddr("e0", netip.PrefixFrom(clientAddr, 24)))
	must(t, w.cli.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), routerCli))
	for k, v := range map[string]string{
		"net/ipv4/ip_forward": "1", "net/ipv4/fib_multipath_hash_policy": "1", "net/ipv6/fib_multipath_hash_policy": "1",
		"net/ipv4/conf/all/rp_filter": "0", "net/ipv4/conf/r0/rp_filter": "0", "net/ipv4/conf/c0/rp_filter": "0",
	} {
		must(t, w.rt.Sysctl(k, v))
	}
	clearHash(t, w.rt, "c0")
	w.routerNFT(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "bird.conf")
	must(t, os.WriteFile(conf, []byte(birdConfig()), 0o644))
	w.birdSock = filepath.Join(dir, "bird.ctl")
	e2etest.Start(t, w.rt, "bird", bird, "-f", "-c", conf, "-s", w.birdSock, "-P", filepath.Join(dir, "bird.pid"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := w.birdc("show status"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("bird did not come up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	for i := 1; i <= numNodes; i++ {
		w.lbs[i] = netns.New(t, fmt.Sprintf("blb%d", i))
		sw := fmt.Sprintf("s-lb%d", i)
		port(w.lbs[i], sw, "l0", lbAddr(i))
		w.swPorts[i] = e2etest.AttachPass(t, w.sw, sw)
	}
	for i := 1; i <= numPEs; i++ {
		ns := netns.New(t, fmt.Sprintf("bpe%d", i))
		w.pes[i] = ns
		port(ns, fmt.Sprintf("s-pe%d", i), "e0", peAddr(i))
		must(t, ns.AddAddr("lo", netip.PrefixFrom(vip, 32)))
		must(t, ns.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), routerSrv))
		must(t, ns.Sysctl("net/ipv4/conf/all/rp_filter", "0"))
		must(t, ns.Sysctl("net/ipv4/conf/e0/rp_filter", "0"))
	}
	for i := 1; i <= 3; i++ {
		w.startNode(t, i)
	}
	for i := 1; i <= 3; i++ {
		w.nodes[i].WaitLog(t, "node running", 15*time.Second)
	}
	for i := 1; i <= numPEs; i++ {
		w.startPE(t, i)
	}
	for i := 1; i <= numPEs; i++ {
		w.peProcs[i].WaitLog(t, "pool", 15*time.Second)
	}
	// Maglev consistency needs the same PE set on every node.
	for i := 1; i <= 3; i++ {
		w.waitPEs(t, i, numPEs, 15*time.Second)
	}
	return w
}

// startNode runs node i: ENRP peer of the first three nodes, BGP peer of
// the router with a 3s hold time, a 1.5s drain on SIGTERM.
func (w *world) startNode(t *testing.T, i int) {
	args := []string{"node", "--id", strconv.Itoa(i), "-i", "l0", "--mode", "native",
		"--vip", fmt.Sprintf("%s=%s:%d/tcp", pool, vip, vipPort), "--seed", seed,
		"--pin-dir", loadertest.PinDir(w.t), "--source-v4", lbAddr(i).String(),
		"--asap", "0.0.0.0:3863", "--advertise-asap", lbAddr(i).String() + ":3863",
		"--enrp", "0.0.0.0:9901", "--advertise-enrp", lbAddr(i).String() + ":9901",
		// Keep-alives loose enough for a loaded 2-core machine.
		"--keepalive-interval", "250ms", "--keepalive-timeout", "750ms",
		"--drain-timeout", "60s", "--reconcile-every", "1s", "--metrics", metrics,
		// One-arm: the router, the other nodes and the PEs are on
		// l0's segment; the client (10.1.0.2) is not.
		"--control-net", "10.0.0.0/24",
		"--bgp-asn", "65001", "--bgp-router-id", lbAddr(i).String(),
		"--bgp-peer", fmt.Sprintf("%s,asn=65000,hold-time=%s,connect-retry=1s", routerSrv, holdTime),
		"--bgp-drain", drainTime.String()}
	for j := 1; j <= 3; j++ {
		if j != i {
			args = append(args, "--peer", lbAddr(j).String()+":9901")
		}
	}
	w.nodes[i] = e2etest.Start(w.t, w.lbs[i], fmt.Sprintf("node%d", i), w.bin, args...)
}

// startPE runs PE i (identifier i), registered with node 1, the one node
// that is never stopped.
func (w *world) startPE(t *testing.T, i int) {
	regs := lbAddr(1).String() + ":3863," + lbAddr(2).String() + ":3863"
	w.peProcs[i] = e2etest.Start(w.t, w.pes[i], fmt.Sprintf("pe%d", i), w.bin, "pe", "--pool", pool, "--id", strconv.Itoa(i),
		"--registrar", regs, "--listen", fmt.Sprintf("0.0.0.0:%d", vipPort),
		"--service", "echo", "--unaware", "--decap", "e0", "--policy", "rr", "--drain-timeout", "60s")
}

func (w *world) birdc(cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return w.rt.Run(ctx, "birdc", append([]string{"-s", w.birdSock}, strings.Fields(cmd)...)...)
}

var viaRE = regexp.MustCompile(`via (\d+\.\d+\.\d+\.\d+)`)

// routerHops returns the VIP route's next hops as BIRD holds them (its
// best route and the ones merged with it) and as the kernel has them.
func (w *world) routerHops() (bird, kernel []string, err error) {
	out, err := w.birdc("show route for " + vip.String() + " all")
	if err != nil && !strings.Contains(out, "Network not found") {
		return nil, nil, err
	}
	for _, m := range viaRE.FindAllStringSubmatch(out, -1) {
		bird = append(bird, m[1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kout, err := w.rt.Run(ctx, "ip", "route", "show", vip.String()+"/32")
	if err != nil {
		return nil, nil, err
	}
	for _, m := range viaRE.FindAllStringSubmatch(kout, -1) {
		kernel = append(kernel, m[1])
	}
	sort.Strings(bird)
	sort.Strings(kernel)
	return bird, kernel, nil
}

func addrs(nodes ...int) []string {
	var out []string
	for _, i := range nodes {
		out = append(out, lbAddr(i).String())
	}
	sort.Strings(out)
	return out
}

// waitHops waits until both BIRD and the kernel route the VIP over exactly
// the given nodes (none: no route) and returns when that was first seen.
func (w *world) waitHops(t *testing.T, timeout time.Duration, nodes ...int) time.Time {
	t.Helper()
	want := fmt.Sprint(addrs(nodes...))
	deadline := time.Now().Add(timeout)
	var b, k []string
	var err error
	for time.Now().Before(deadline) {
		b, k, err = w.routerHops()
		if err == nil && fmt.Sprint(b) == want && fmt.Sprint(k) == want {
			return time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("router next hops for %s: bird %v, kernel %v (err %v), want %s within %v", vip, b, k, err, want, timeout)
	return time.Time{}
}

// routerNFT makes the router record, per node, the client ports of the
// flows it forwards there: one nftables set per next hop, filled in the
// forward hook by the route's next hop (rt nexthop).
func (w *world) routerNFT(t *testing.T) {
	t.Helper()
	var b strings.Builder
	b.WriteString("table ip bgpe2e {\n")
	for i := 1; i <= numNodes; i++ {
		fmt.Fprintf(&b, "  set n%d { type inet_service; flags dynamic; size 65535; }\n", i)
	}
	b.WriteString("  chain hops {\n    type filter hook forward priority 0; policy accept;\n")
	for i := 1; i <= numNodes; i++ {
		fmt.Fprintf(&b, "    ip daddr %s tcp dport %d rt nexthop %s add @n%d { tcp sport }\n", vip, vipPort, lbAddr(i), i)
	}
	b.WriteString("  }\n}\n")
	cmd := w.rt.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s\n%s", err, out, b.String())
	}
}

var portRE = regexp.MustCompile(`\b\d{4,5}\b`)

// onNodes returns which node the router sends each connection to now: it
// empties the router's per-node sets, echoes once on every connection and
// reads the sets back.
func (w *world) onNodes(t *testing.T, conns []*conn) map[int][]*conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 1; i <= numNodes; i++ {
		if _, err := w.rt.Run(ctx, "nft", "flush", "set", "ip", "bgpe2e", fmt.Sprintf("n%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if broken, _ := echoAll(conns, 5*time.Second); len(broken) > 0 {
		t.Fatalf("%d of %d connections broken before the step", len(broken), len(conns))
	}
	byPort := map[int]*conn{}
	for _, c := range conns {
		byPort[c.port] = c
	}
	by := map[int][]*conn{}
	seen := 0
	for i := 1; i <= numNodes; i++ {
		out, err := w.rt.Run(ctx, "nft", "list", "set", "ip", "bgpe2e", fmt.Sprintf("n%d", i))
		if err != nil {
			t.Fatal(err)
		}
		_, elems, _ := strings.Cut(out, "elements")
		for _, m := range portRE.FindAllString(elems, -1) {
			p, _ := strconv.Atoi(m)
			if c, ok := byPort[p]; ok {
				by[i] = append(by[i], c)
				seen++
			}
		}
	}
	if seen != len(conns) {
		t.Fatalf("the router forwarded %d of %d flows to a node", seen, len(conns))
	}
	return by
}

// conn is one client connection to the VIP.
type conn struct {
	c    net.Conn
	r    *bufio.Reader
	port int
	seq  int
}

func (w *world) dial(port int) (*conn, error) {
	var c net.Conn
	err := w.cli.Do(func() error {
		d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: clientAddr.AsSlice(), Port: port}}
		var err error
		c, err = d.Dial("tcp", netip.AddrPortFrom(vip, vipPort).String())
		return err
	})
	if err != nil {
		return nil, err
	}
	return &conn{c: c, r: bufio.NewReader(c), port: port}, nil
}

// echo sends one line and waits for the echo service to return it.
func (c *conn) echo(timeout time.Duration) error {
	c.seq++
	msg := fmt.Sprintf("flow %d message %d", c.port, c.seq)
	_ = c.c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c.c, msg+"\n"); err != nil {
		return err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return err
	}
	if line != msg+"\n" {
		return fmt.Errorf("echo answered %q to %q", line, msg)
	}
	return nil
}

// echoAll echoes once on every connection at the same time and returns
// the ones that failed and the time the slowest one took.
func echoAll(conns []*conn, timeout time.Duration) (broken []*conn, slowest time.Duration) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.echo(timeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				broken = append(broken, c)
				return
			}
			slowest = max(slowest, time.Since(start))
		}()
	}
	wg.Wait()
	return broken, slowest
}

func remove(conns, gone []*conn) []*conn {
	drop := map[*conn]bool{}
	for _, c := range gone {
		drop[c] = true
	}
	var out []*conn
	for _, c := range conns {
		if !drop[c] {
			out = append(out, c)
		}
	}
	return out
}

func newFlows(before, after e2etest.Metrics, filters ...string) float64 {
	return after.Sum("rspxdp_pe_new_flows_total", filters...) - before.Sum("rspxdp_pe_new_flows_total", filters...)
}

// TestBGPECMP is issue 16's evidence. Every figure is printed on one line
// starting "BGP:" that the test asserts on:
//
//	sudo go test -count=1 -v -run TestBGPECMP ./e2e/bgp/ | grep BGP:
func TestBGPECMP(t *testing.T) {
	testStart := time.Now()
	w := setup(t)
	live := []int{1, 2, 3}

	// 1. One ECMP route, one next hop per healthy node.
	w.waitHops(t, 20*time.Second, live...)
	b, k, err := w.routerHops()
	must(t, err)
	t.Logf("BGP: 1. router route %s/32: bird next hops %v, kernel next hops %v (%d healthy nodes)", vip, b, k, len(live))

	// 2. 300 connections over the three nodes and the three PEs.
	before := map[int]e2etest.Metrics{}
	for _, i := range live {
		before[i] = w.mustScrape(t, i)
	}
	var conns []*conn
	for n := 0; n < numConns; n++ {
		c, err := w.dial(20000 + n)
		if err != nil {
			t.Fatalf("connection %d: %v", n, err)
		}
		t.Cleanup(func() { c.c.Close() })
		if err := c.echo(5 * time.Second); err != nil {
			t.Fatalf("connection %d: first echo: %v", n, err)
		}
		conns = append(conns, c)
	}
	predicted := w.onNodes(t, conns)
	perNode, perPE := map[int]float64{}, map[int]float64{}
	for _, i := range live {
		after := w.mustScrape(t, i)
		perNode[i] = newFlows(before[i], after)
		for p := 1; p <= numPEs; p++ {
			perPE[p] += newFlows(before[i], after, `pe="`+wire.FormatID(uint32(p))+`"`)
		}
	}
	t.Logf("BGP: 2. %d connections: new flows per node %v (router forwarded %d/%d/%d), per PE %v",
		numConns, perNode, len(predicted[1]), len(predicted[2]), len(predicted[3]), perPE)
	for _, i := range live {
		if perNode[i] < float64(len(predicted[i])) || len(predicted[i]) == 0 {
			t.Errorf("node %d counted %v new flows; the router sent it %d", i, perNode[i], len(predicted[i]))
		}
	}
	for p := 1; p <= numPEs; p++ {
		// Round robin: Maglev gives each PE a third; 50 is far below.
		if perPE[p] < 50 {
			t.Errorf("PE %d got %v of %d new flows", p, perPE[p], numConns)
		}
	}

	// 5. Node 4 joins: the router rehashes over four next hops; every
	// connection, wherever it lands now, reaches the same PE.
	w.startNode(t, 4)
	joined := w.waitHops(t, 20*time.Second, 1, 2, 3, 4)
	broken, slow := echoAll(conns, 10*time.Second)
	moved := len(w.onNodes(t, remove(conns, broken))[4])
	t.Logf("BGP: 5. node added: route over 4 next hops after %v; %d of %d flows now through node 4; connections broken: %d of %d (slowest echo %v)",
		joined.Sub(w.nodes[4].Started).Round(time.Millisecond), moved, len(conns), len(broken), len(conns), slow.Round(time.Millisecond))
	if len(broken) != 0 || moved == 0 {
		t.Errorf("node added: %d broken, %d moved to node 4", len(broken), moved)
	}
	conns = remove(conns, broken)

	// 3. Node 4 stops gracefully: it withdraws, the router drops its next
	// hop, and only then does the node stop forwarding.
	on4 := w.onNodes(t, conns)[4]
	sigterm := time.Now()
	w.nodes[4].Signal(syscall.SIGTERM)
	gone := w.waitHops(t, 10*time.Second, 1, 2, 3)
	select {
	case <-w.nodes[4].Done:
	case <-time.After(15 * time.Second):
		t.Fatal("node 4 did not exit within 15s of SIGTERM")
	}
	broken, slow = echoAll(conns, 10*time.Second)
	brokenOn4 := len(intersect(broken, on4))
	t.Logf("BGP: 3. graceful stop of node 4: next hop gone %v after SIGTERM, process exited %v after SIGTERM; connections broken: %d of %d (%d of %d overall, slowest echo %v)",
		gone.Sub(sigterm).Round(time.Millisecond), w.nodes[4].ExitAt.Sub(sigterm).Round(time.Millisecond),
		brokenOn4, len(on4), len(broken), len(conns), slow.Round(time.Millisecond))
	if !gone.Before(w.nodes[4].ExitAt) {
		t.Errorf("the router still routed through node 4 when it exited")
	}
	if len(broken) != 0 || len(on4) == 0 {
		t.Errorf("graceful stop: %d broken, %d were on node 4", len(broken), len(on4))
	}
	conns = remove(conns, broken)

	// 4. Node 3 dies as a host does: silently. The switch port drops
	// everything node 3 sends (XDP_DROP on the switch side of its veth:
	// the link stays up, so the switch keeps its MAC and does not flood
	// its frames to the other nodes, and the kernel's FIN of the BGP
	// session never reaches the router) and the process is killed with
	// SIGKILL. The session ends only when the router's hold time expires;
	// flows on node 3 stall until then and continue through nodes 1 and 2
	// to the same PE.
	on3 := w.onNodes(t, conns)[3]
	crash := time.Now()
	must(t, w.swPorts[3].Update(e2etest.VerdictProgram(t, e2etest.XDPDrop))) // XDP_DROP
	w.nodes[3].Signal(syscall.SIGKILL)
	type result struct {
		broken []*conn
		slow   time.Duration
	}
	res := make(chan result, 1)
	go func() {
		b, s := echoAll(on3, holdTime+20*time.Second)
		res <- result{b, s}
	}()
	dropped := w.waitHops(t, holdTime+10*time.Second, 1, 2)
	live = []int{1, 2}
	r := <-res
	broken, _ = echoAll(conns, 10*time.Second)
	t.Logf("BGP: 4. crash of node 3 (kill -9, its port silent): router dropped its next hop after %v (hold time %v); flows on it stalled up to %v; connections broken: %d of %d (%d of %d overall)",
		dropped.Sub(crash).Round(time.Millisecond), holdTime, r.slow.Round(time.Millisecond), len(r.broken), len(on3), len(broken), len(conns))
	if len(r.broken) != 0 || len(broken) != 0 || len(on3) == 0 {
		t.Errorf("crash: %d of %d broken on node 3, %d overall", len(r.broken), len(on3), len(broken))
	}
	// The router must have noticed by its hold timer (which runs from the
	// last keep-alive heard, up to a third of the hold time before the
	// crash), not by a closed connection.
	proto, err := w.birdc("show protocols all node3")
	must(t, err)
	lastErr := "?"
	if _, e, ok := strings.Cut(proto, "Last error:"); ok {
		lastErr = strings.TrimSpace(strings.SplitN(e, "\n", 2)[0])
	}
	t.Logf("BGP: 4. router's session to node 3: %s", lastErr)
	if !strings.HasSuffix(lastErr, "Hold timer expired") {
		t.Errorf("router dropped node 3 for %q, not its hold timer", lastErr)
	}

	// 6. Every PE of the pool dies: every node withdraws (too few PEs) and
	// the router has no route; one PE returns and every node announces
	// again.
	for p := 1; p <= numPEs; p++ {
		w.peProcs[p].Signal(syscall.SIGKILL)
	}
	deadAt := time.Now()
	withdrawn := w.waitHops(t, 15*time.Second)
	for _, i := range live {
		m := w.mustScrape(t, i)
		if v := m.Sum("rspxdp_bgp_withdrawals_total", `reason="too-few-pes"`); v < 1 {
			t.Errorf("node %d: rspxdp_bgp_withdrawals_total{reason=too-few-pes} = %v", i, v)
		}
		if v := m.Sum("rspxdp_bgp_vip_announced"); v != 0 {
			t.Errorf("node %d: rspxdp_bgp_vip_announced = %v after the pool died", i, v)
		}
	}
	w.startPE(t, 1)
	back := time.Now()
	reannounced := w.waitHops(t, 15*time.Second, live...)
	b, k, err = w.routerHops()
	must(t, err)
	t.Logf("BGP: 6. pool without PEs: route withdrawn by nodes %v %v after the PEs died; one PE back: re-announced %v later, next hops bird %v kernel %v",
		live, withdrawn.Sub(deadAt).Round(time.Millisecond), reannounced.Sub(back).Round(time.Millisecond), b, k)
	m := w.mustScrape(t, 1)
	if v := m.Sum("rspxdp_bgp_session_state", `state="established"`); v != 1 {
		t.Errorf("node 1: rspxdp_bgp_session_state{state=established} = %v, want 1", v)
	}
	// What an operator sees: rspxdp status --node on node 1.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := w.lbs[1].Run(ctx, w.bin, "status", "--node", metrics)
	must(t, err)
	for _, want := range []string{"bgp: AS 65001, router id 10.0.0.11", "peer 10.0.0.1", "established", "10.99.0.1/32", "announced (healthy)", "too-few-pes 1"} {
		if !strings.Contains(st, want) {
			t.Errorf("rspxdp status --node lacks %q:\n%s", want, st)
		}
	}
	t.Logf("BGP: whole test %v", time.Since(testStart).Round(time.Millisecond))
}

func intersect(a, b []*conn) []*conn {
	in := map[*conn]bool{}
	for _, c := range b {
		in[c] = true
	}
	var out []*conn
	for _, c := range a {
		if in[c] {
			out = append(out, c)
		}
	}
	return out
}
