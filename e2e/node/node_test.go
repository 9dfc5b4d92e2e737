package nodee2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	"golang.org/x/sys/unix"

	"github.com/rspxdp/rspxdp/internal/e2etest"
	"github.com/rspxdp/rspxdp/internal/netns"
	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/loader/loadertest"
	"github.com/rspxdp/rspxdp/wire"
)

// The topology: one L2 segment, a bridge in a "switch" namespace, to which
// the client, both load-balancer namespaces and the three PE namespaces are
// attached by a veth each.
//
//	client  e0 10.0.0.2, 10.0.0.3 ─┐
//	lb1     l0 10.0.0.11 [node 1] ─┤
//	lb2     l0 10.0.0.12 [node 2] ─┼─ br0 (switch namespace)
//	pe<i>   e0 10.0.0.2<i>        ─┘   lo: VIP 10.99.0.1, XDP decap on e0
//
// The nodes run one-arm: XDP on l0 encapsulates a VIP packet in IPIP to the
// PE and sends it back out of l0 with XDP_TX. In native mode XDP_TX on a veth
// drops every frame unless the peer veth has an XDP program, so the switch
// side of each LB's veth gets a trivial XDP_PASS program. Each PE is
// `rspxdp pe --unaware --decap e0`: it decapsulates in XDP and answers the
// plain TCP client directly on the segment (the nodes see one direction
// only). The client is RSerPool-unaware, so which PE a flow reached is read
// from the node's per-PE new-flow counter around that one connection.
//
// The client picks a node per flow by routing: packets from 10.0.0.2 follow
// the main table (VIP via node 1 unless a test replaces that route), packets
// from 10.0.0.3 follow table 102 (VIP via node 2), by a source rule. So the
// very same 5-tuple can be sent through either node (replace the main
// route), and both nodes can be measured at once (one source each).
var (
	clientA = netip.MustParseAddr("10.0.0.2") // main table
	clientB = netip.MustParseAddr("10.0.0.3") // table 102: node 2
	vip     = netip.MustParseAddr("10.99.0.1")
)

const (
	vipPort  = 7000
	pool     = "echo"
	numPEs   = 3
	metrics  = "127.0.0.1:9464"
	seed     = "0x5eed"
	tableLB2 = 102
)

func lbAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)}) }
func peAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, byte(20 + i)}) }

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// rspxdpBinary builds rspxdp once per test binary run.
func rspxdpBinary(t *testing.T) string {
	t.Helper()
	testenv.RequireCommand(t, "go", "golang-go")
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rspxdp-nodee2e-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "rspxdp")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", binPath, "github.com/rspxdp/rspxdp/cmd/rspxdp").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// logBuf collects a process's output for waiting on lines and for failure
// reports.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proc is an rspxdp process in a namespace, in its own process group (ip
// netns exec execs the binary, so the group is exactly that process).
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *logBuf
	done chan struct{}
}

func start(t *testing.T, ns *netns.NS, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: &logBuf{}, done: make(chan struct{})}
	p.cmd = ns.Command(context.Background(), rspxdpBinary(t), args...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("---- log of %s ----\n%s", name, p.log.String())
		}
	})
	return p
}

func (p *proc) signal(sig syscall.Signal) { _ = syscall.Kill(-p.cmd.Process.Pid, sig) }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitLog waits until the output contains s.
func (p *proc) waitLog(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.log.String(), s) {
		if time.Now().After(deadline) || p.exited() {
			t.Fatalf("%s: no %q in its output within %v (exited: %v):\n%s", p.name, s, timeout, p.exited(), p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// world is the running system of one test.
type world struct {
	root     *testing.T // owns the processes and namespaces
	sw, cli  *netns.NS
	lbs      [3]*netns.NS // 1-based
	pes      [numPEs + 1]*netns.NS
	nodes    [3]*proc
	nodeArgs [3][]string
	peProcs  [numPEs + 1]*proc
	peIDs    [numPEs + 1]uint32
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// passProgram is the XDP_PASS program the switch side of each LB veth needs
// for native XDP_TX on the LB side.
func attachPass(t *testing.T, ns *netns.NS, ifname string) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}, // XDP_PASS
	})
	must(t, err)
	t.Cleanup(func() { prog.Close() })
	ifc, err := ns.Iface(ifname)
	must(t, err)
	must(t, ns.Do(func() error {
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
		if err != nil {
			return fmt.Errorf("attach XDP_PASS to %s: %w", ifname, err)
		}
		t.Cleanup(func() { l.Close() })
		return nil
	}))
}

func setup(t *testing.T) *world {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "iproute2")
	rspxdpBinary(t) // build before any namespace exists
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := &world{root: t, sw: netns.New(t, "sw"), cli: netns.New(t, "cli")}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	must(t, w.sw.Netlink().LinkAdd(br))
	must(t, w.sw.LinkUp("br0"))
	port := func(ns *netns.NS, swName, name string, addrs ...netip.Addr) {
		t.Helper()
		_, _, err := netns.Veth(w.sw, swName, ns, name)
		must(t, err)
		l, err := w.sw.Netlink().LinkByName(swName)
		must(t, err)
		must(t, w.sw.Netlink().LinkSetMasterByIndex(l, br.Attrs().Index))
		for _, a := range addrs {
			must(t, ns.AddAddr(name, netip.PrefixFrom(a, 24)))
		}
		// Full checksums: these packets cross XDP programs that rewrite
		// them (shared README).
		must(t, ns.TxChecksumOff(ctx, name))
		must(t, w.sw.TxChecksumOff(ctx, swName))
	}
	port(w.cli, "s-cli", "e0", clientA, clientB)
	must(t, w.cli.AddRoute(netip.PrefixFrom(vip, 32), lbAddr(1)))
	_, err := w.cli.Run(ctx, "ip", "route", "add", vip.String()+"/32", "via", lbAddr(2).String(), "table", strconv.Itoa(tableLB2))
	must(t, err)
	_, err = w.cli.Run(ctx, "ip", "rule", "add", "from", clientB.String(), "table", strconv.Itoa(tableLB2))
	must(t, err)

	for i := 1; i <= 2; i++ {
		w.lbs[i] = netns.New(t, fmt.Sprintf("lb%d", i))
		sw := fmt.Sprintf("s-lb%d", i)
		port(w.lbs[i], sw, "l0", lbAddr(i))
		attachPass(t, w.sw, sw)
	}
	for i := 1; i <= numPEs; i++ {
		ns := netns.New(t, fmt.Sprintf("pe%d", i))
		w.pes[i] = ns
		port(ns, fmt.Sprintf("s-pe%d", i), "e0", peAddr(i))
		must(t, ns.AddAddr("lo", netip.PrefixFrom(vip, 32)))
		must(t, ns.Sysctl("net/ipv4/conf/all/rp_filter", "0"))
		must(t, ns.Sysctl("net/ipv4/conf/e0/rp_filter", "0"))
	}

	for i := 1; i <= 2; i++ {
		other := 3 - i
		w.nodeArgs[i] = []string{"node", "--id", strconv.Itoa(i), "-i", "l0", "--mode", "native",
			"--vip", fmt.Sprintf("%s=%s:%d/tcp", pool, vip, vipPort), "--seed", seed,
			"--pin-dir", loadertest.PinDir(t), "--source-v4", lbAddr(i).String(),
			"--asap", "0.0.0.0:3863", "--advertise-asap", lbAddr(i).String() + ":3863",
			"--enrp", "0.0.0.0:9901", "--advertise-enrp", lbAddr(i).String() + ":9901",
			"--peer", lbAddr(other).String() + ":9901",
			"--keepalive-interval", "100ms", "--keepalive-timeout", "100ms",
			"--drain-timeout", "60s", "--reconcile-every", "1s", "--metrics", metrics, "--keep-on-exit",
			// One-arm: the PEs (.21-.23) and the other node (.11, .12)
			// reach the registrar through l0, the client side; the
			// clients (.2, .3) must not.
			"--control-net", "10.0.0.8/29", "--control-net", "10.0.0.16/28"}
		w.nodes[i] = start(t, w.lbs[i], fmt.Sprintf("node%d", i), w.nodeArgs[i]...)
	}
	for i := 1; i <= 2; i++ {
		w.nodes[i].waitLog(t, "node 0x", 15*time.Second)
	}
	for i := 1; i <= numPEs; i++ {
		// PEs 1 and 3 register with node 1, PE 2 with node 2: each node
		// learns the others' PEs over ENRP.
		regs := []string{lbAddr(1).String() + ":3863", lbAddr(2).String() + ":3863"}
		if i == 2 {
			regs[0], regs[1] = regs[1], regs[0]
		}
		w.peIDs[i] = uint32(i)
		w.peProcs[i] = startPE(t, w.pes[i], fmt.Sprintf("pe%d", i), i, regs)
	}
	for i := 1; i <= numPEs; i++ {
		w.peProcs[i].waitLog(t, "pool", 15*time.Second)
	}
	for i := 1; i <= 2; i++ {
		w.waitGauge(t, i, "rspxdp_dataplane_pool_elements", `{state="active"}`, numPEs, 15*time.Second)
	}
	return w
}

// startPE runs `rspxdp pe` as the product runs it behind a node: a plain
// TCP echo service for RSerPool-unaware clients on the VIP port, with the
// IPIP decapsulation XDP program on e0 attached by the PE process itself
// (so it goes when the process dies), identifier id.
func startPE(t *testing.T, ns *netns.NS, name string, id int, registrars []string) *proc {
	return start(t, ns, name, "pe", "--pool", pool, "--id", strconv.Itoa(id),
		"--registrar", strings.Join(registrars, ","), "--listen", fmt.Sprintf("0.0.0.0:%d", vipPort),
		"--service", "echo", "--unaware", "--decap", "e0", "--policy", "rr", "--drain-timeout", "60s")
}

// metricSet is one scrape: name -> labels -> value.
type metricSet = e2etest.Metrics

// scrape reads node i's /metrics from inside its namespace.
func (w *world) scrape(i int) (metricSet, error) {
	m, err := scrapeIn(w.lbs[i], metrics)
	if err != nil {
		return nil, fmt.Errorf("scrape node %d: %w", i, err)
	}
	return m, nil
}

// getIn GETs path from the HTTP listener at addr, dialled from inside ns.
// The caller closes the body.
func getIn(ns *netns.NS, addr, path string) (*http.Response, error) {
	var c net.Conn
	if err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	}); err != nil {
		return nil, err
	}
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return c, nil }}
	defer tr.CloseIdleConnections()
	return (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + addr + path)
}

// scrapeIn reads /metrics at addr from inside ns.
func scrapeIn(ns *netns.NS, addr string) (metricSet, error) { return e2etest.Scrape(ns, addr) }

func (w *world) mustScrape(t *testing.T, i int) metricSet {
	t.Helper()
	m, err := w.scrape(i)
	must(t, err)
	return m
}

// waitGauge waits until node i's metric name{labels} equals want, summed
// over the series whose labels include labels (the pool-element gauges are
// per pool and VIP).
func (w *world) waitGauge(t *testing.T, i int, name, labels string, want float64, timeout time.Duration) {
	t.Helper()
	if err := w.gaugeWithin(i, name, labels, want, timeout); err != nil {
		t.Fatal(err)
	}
}

func (w *world) gaugeWithin(i int, name, labels string, want float64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var got float64
	for time.Now().Before(deadline) {
		m, err := w.scrape(i)
		if err == nil {
			if got = m.Sum(name, strings.Trim(labels, "{}")); got == want {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("node %d: %s%s = %v, want %v within %v", i, name, labels, got, want, timeout)
}

// conn is a client TCP connection to the VIP: a plain, RSerPool-unaware
// client.
type conn struct {
	c    net.Conn
	r    *bufio.Reader
	port int
}

// dial connects from src:port to the VIP within timeout. SO_REUSEADDR lets
// a flow be recreated with the same 5-tuple.
func (w *world) dial(src netip.Addr, port int, timeout time.Duration) (*conn, error) {
	var c net.Conn
	err := w.cli.Do(func() error {
		d := net.Dialer{
			Timeout:   timeout,
			LocalAddr: &net.TCPAddr{IP: src.AsSlice(), Port: port},
			Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				if err := rc.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
				}); err != nil {
					return err
				}
				return serr
			},
		}
		var err error
		c, err = d.Dial("tcp", netip.AddrPortFrom(vip, vipPort).String())
		return err
	})
	if err != nil {
		return nil, err
	}
	return &conn{c: c, r: bufio.NewReader(c), port: port}, nil
}

// echo sends one line and checks the echo service returns it.
func (c *conn) echo(msg string, timeout time.Duration) error {
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

// close resets the connection: no TIME_WAIT, so the 5-tuple can be reused.
func (c *conn) close() {
	if tc, ok := c.c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.c.Close()
}

// once opens a connection from src:port, echoes once and resets it.
func (w *world) once(src netip.Addr, port int) error {
	c, err := w.dial(src, port, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.close()
	return c.echo("hello", 2*time.Second)
}

// nodeOf is the node a client source address is routed through (clientA:
// the main table, node 1 unless viaNode changed it).
func nodeOf(src netip.Addr) int {
	if src == clientB {
		return 2
	}
	return 1
}

// peLabel matches the pe label as wire.FormatID writes it (0x00000001).
var peLabel = regexp.MustCompile(`pe="(0x[0-9a-f]{8})"`)

// flowPE runs one connection from src:port through node and returns the PE
// the node's data plane steered it to: the one PE whose new-flow counter
// grew (the client, being unaware, cannot tell).
func (w *world) flowPE(node int, src netip.Addr, port int) (uint32, error) {
	before, err := w.scrape(node)
	if err != nil {
		return 0, err
	}
	if err := w.once(src, port); err != nil {
		return 0, err
	}
	after, err := w.scrape(node)
	if err != nil {
		return 0, err
	}
	var ids []uint32
	for labels, v := range after["rspxdp_pe_new_flows_total"] {
		d := v - before["rspxdp_pe_new_flows_total"][labels]
		if d == 0 {
			continue
		}
		// More than one when the SYN was retransmitted (a SYN is
		// always steered as new), on the same PE.
		m := peLabel.FindStringSubmatch(labels)
		if m == nil || d < 0 {
			return 0, fmt.Errorf("node %d: %s changed by %v for one flow", node, labels, d)
		}
		id, _ := strconv.ParseUint(m[1], 0, 32)
		ids = append(ids, uint32(id))
	}
	if len(ids) != 1 {
		return 0, fmt.Errorf("node %d: one flow from %s:%d counted as new on PEs %v", node, src, port, ids)
	}
	return ids[0], nil
}

// viaNode routes clientA's VIP traffic through node i.
func (w *world) viaNode(t *testing.T, i int) {
	t.Helper()
	r := &netlink.Route{Dst: &net.IPNet{IP: vip.AsSlice(), Mask: net.CIDRMask(32, 32)}, Gw: lbAddr(i).AsSlice()}
	must(t, w.cli.Netlink().RouteReplace(r))
}

// TestTwoNodes is issue 8's evidence: two `rspxdp node` processes (ENRP
// peers, same VIP and seed, keep-alives 100ms/100ms) and `rspxdp pe`
// processes in namespaces, plain TCP clients. Its steps print the measured
// figures; the failover ones also as lines starting "EVIDENCE" on stdout:
//
//	sudo go test -count=1 -v -run TestTwoNodes ./e2e/node/ | grep -E 'EVIDENCE|restart:'
func TestTwoNodes(t *testing.T) {
	w := setup(t)
	steps := []struct {
		name string
		fn   func(*testing.T, *world)
	}{
		{"Metrics", testMetrics},
		{"Health", testHealth},
		{"IdenticalTables", testIdenticalTables},
		{"Drain", testDrain},
		{"Death", testDeath},
		{"HostDeath", testHostDeath},
		// Last: the restarted node keeps its adopted PEs for a grace
		// period, which would blur the figures of the steps above.
		{"Restart", testRestart},
		{"DeathAfterRestart", testDeathAfterRestart},
	}
	// The steps share the system and run in order; a failed check does
	// not stop the later ones (each sets up the state it needs), a failed
	// setup inside a step does (t.Fatal there ends only that step).
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) { s.fn(t, w) })
	}
}

// testHealth: a running node process answers /healthz, and /readyz with
// every check passing (registrar serving, its peer heard, data plane
// attached and reconciled) once it carries traffic (issue 18).
func testHealth(t *testing.T, w *world) {
	for i := 1; i <= 2; i++ {
		for _, tc := range []struct {
			path  string
			wants []string
		}{
			{"/healthz", []string{"ok"}},
			{"/readyz", []string{"[+]registrar ok", "[+]peers ok", "[+]dataplane ok"}},
		} {
			resp, err := getIn(w.lbs[i], metrics, tc.path)
			if err != nil {
				t.Fatalf("node %d %s: %v", i, tc.path, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("node %d %s: %s %q %v", i, tc.path, resp.Status, body, err)
				continue
			}
			for _, want := range tc.wants {
				if !strings.Contains(string(body), want) {
					t.Errorf("node %d %s lacks %q:\n%s", i, tc.path, want, body)
				}
			}
		}
	}
}

// testMetrics: N connections through node 1 move its counters by exactly
// what was sent, and node 2's not at all.
func testMetrics(t *testing.T, w *world) {
	const n = 30
	before1, before2 := w.mustScrape(t, 1), w.mustScrape(t, 2)
	for k := 0; k < n; k++ {
		if err := w.once(clientA, 41000+k); err != nil {
			t.Fatalf("connection %d: %v", k, err)
		}
	}
	after1, after2 := w.mustScrape(t, 1), w.mustScrape(t, 2)
	vipLabel := fmt.Sprintf(`vip="%s:%d/tcp"`, vip, vipPort)
	if _, ok := after1["rspxdp_vip_packets_total"]; !ok {
		t.Fatalf("no rspxdp_vip_packets_total in the scrape")
	}
	newFlows := after1.Sum("rspxdp_pe_new_flows_total", `pool="echo"`) - before1.Sum("rspxdp_pe_new_flows_total", `pool="echo"`)
	if newFlows != n {
		t.Errorf("rspxdp_pe_new_flows_total grew by %v for %d connections", newFlows, n)
	}
	per := map[int]float64{}
	for i := 1; i <= numPEs; i++ {
		f := `pe="` + wire.FormatID(w.peIDs[i]) + `"`
		per[i] = after1.Sum("rspxdp_pe_new_flows_total", f) - before1.Sum("rspxdp_pe_new_flows_total", f)
	}
	if spread := len(per) - countZero(per); spread < 2 {
		t.Errorf("%d new flows all counted on one PE: %v", n, per)
	}
	// At least SYN, ACK, data and RST per connection reach the node.
	vipPk := after1.Sum("rspxdp_vip_packets_total") - before1.Sum("rspxdp_vip_packets_total")
	pePk := after1.Sum("rspxdp_pe_packets_total") - before1.Sum("rspxdp_pe_packets_total")
	if vipPk < 4*n {
		t.Errorf("rspxdp_vip_packets_total grew by %v for %d connections (want >= %d)", vipPk, n, 4*n)
	}
	if pePk != vipPk {
		t.Errorf("PE packets grew by %v, VIP packets by %v: every VIP packet goes to a PE", pePk, vipPk)
	}
	if miss := after1.Sum("rspxdp_conntable_lookups_total", `result="miss"`) - before1.Sum("rspxdp_conntable_lookups_total", `result="miss"`); miss < n {
		t.Errorf("connection-table misses grew by %v for %d new flows", miss, n)
	}
	if d := after2.Sum("rspxdp_vip_packets_total") - before2.Sum("rspxdp_vip_packets_total"); d != 0 {
		t.Errorf("node 2 counted %v VIP packets of flows routed through node 1", d)
	}
	for _, g := range []struct {
		name, labels string
		want         float64
	}{
		{"rspxdp_pools", "", 1},
		{"rspxdp_pool_elements", `{state="active"}`, numPEs},
		{"rspxdp_dataplane_pool_elements", `{state="active"}`, numPEs},
		{"rspxdp_dataplane_pool_elements", `{state="draining"}`, 0},
		{"rspxdp_dataplane_pool_elements", `{state="down"}`, 0},
		{"rspxdp_enrp_peers", "", 1},
	} {
		for i, m := range []metricSet{after1, after2} {
			_, ok := m[g.name]
			if got := m.Sum(g.name, strings.Trim(g.labels, "{}")); !ok || got != g.want {
				t.Errorf("node %d: %s%s = %v (present %v), want %v", i+1, g.name, g.labels, got, ok, g.want)
			}
		}
	}
	t.Logf("metrics: %d connections via node 1 (%s): new flows +%v, VIP packets +%v, PE packets +%v, new flows per PE %v",
		n, vipLabel, newFlows, vipPk, pePk, per)
}

func countZero(m map[int]float64) int {
	z := 0
	for _, v := range m {
		if v == 0 {
			z++
		}
	}
	return z
}

// testIdenticalTables: the same 5-tuple sent through node 1 and through node
// 2 (by replacing the client's route in between) reaches the same PE.
func testIdenticalTables(t *testing.T, w *world) {
	defer w.viaNode(t, 1)
	const flows = 24
	used := map[uint32]int{}
	for k := 0; k < flows; k++ {
		port := 42000 + k
		first, second := 1+k%2, 2-k%2
		w.viaNode(t, first)
		a, err := w.flowPE(first, clientA, port)
		if err != nil {
			t.Fatalf("flow %d via node %d: %v", port, first, err)
		}
		w.viaNode(t, second)
		b, err := w.flowPE(second, clientA, port)
		if err != nil {
			t.Fatalf("flow %d via node %d: %v", port, second, err)
		}
		if a != b {
			t.Errorf("flow %s:%d: node %d sent it to PE %d, node %d to PE %d", clientA, port, first, a, second, b)
		}
		used[a]++
	}
	if len(used) < 2 {
		t.Errorf("%d flows all went to one PE: %v", flows, used)
	}
	t.Logf("identical tables: %d flows, each sent through both nodes, same PE every time; spread %v", flows, used)
}

// testRestart: node 1 stops (SIGTERM with --keep-on-exit) and starts again;
// established flows through it keep echoing while no process runs, and the
// new process adopts the pinned state.
func testRestart(t *testing.T, w *world) {
	var open []*conn
	defer func() {
		for _, c := range open {
			c.close()
		}
	}()
	for k := 0; k < 6; k++ {
		c, err := w.dial(clientA, 43000+k, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		if err := c.echo("before", 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	echoAll := func(when string) {
		t.Helper()
		for _, c := range open {
			if err := c.echo(when, 2*time.Second); err != nil {
				t.Fatalf("established flow from port %d %s: %v", c.port, when, err)
			}
		}
	}
	// The PEs alive now (earlier steps drained and killed some), as node 2
	// sees them: the restarted node 1 must end up with the same.
	active := w.mustScrape(t, 2).Sum("rspxdp_dataplane_pool_elements", `state="active"`)
	if active == 0 {
		t.Fatal("no active PE left for the restart step")
	}
	old := w.nodes[1]
	stop := time.Now()
	old.signal(syscall.SIGTERM)
	select {
	case <-old.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("node 1 did not exit within 10s of SIGTERM")
	}
	if !strings.Contains(old.log.String(), "left the data plane attached and pinned") {
		t.Fatalf("node 1 did not keep its data plane on exit:\n%s", old.log.String())
	}
	// No node process in lb1 now: XDP and the pinned maps carry the flows.
	for r := 0; r < 3; r++ {
		echoAll("while node 1 is stopped")
		time.Sleep(100 * time.Millisecond)
	}
	// New flows too: the Maglev tables are in the maps.
	for k := 0; k < 5; k++ {
		if err := w.once(clientA, 43200+k); err != nil {
			t.Errorf("new connection through node 1 while no node process runs: %v", err)
		}
	}
	restarted := time.Now()
	// Started on the root test: the process outlives this step.
	w.nodes[1] = start(w.root, w.lbs[1], "node1-restarted", w.nodeArgs[1]...)
	w.nodes[1].waitLog(t, "adopted pinned data-plane state", 15*time.Second)
	w.nodes[1].waitLog(t, "node running", 15*time.Second)
	up := time.Since(restarted)
	echoAll("right after the restart")
	w.waitGauge(t, 1, "rspxdp_pool_elements", `{state="active"}`, active, 5*time.Second)
	// Adopted PEs stay programmed for a grace (3 x max(keep-alive
	// interval, 5s)) unless the handlespace has them; after it the data
	// plane equals the handlespace.
	w.waitGauge(t, 1, "rspxdp_dataplane_pool_elements", `{state="active"}`, active, 20*time.Second)
	echoAll("after the handlespace is back")
	for k := 0; k < 10; k++ {
		if err := w.once(clientA, 43100+k); err != nil {
			t.Fatalf("new connection through the restarted node: %v", err)
		}
	}
	t.Logf("restart: %d established flows echoed before, during (3 rounds over 300ms with no node process; 5 new flows too) and after; "+
		"node 1 down for %v, new process up and adopted in %v", len(open), restarted.Sub(stop).Round(time.Millisecond), up.Round(time.Millisecond))
}

// findOn looks for source ports from src whose flows go to PE id.
func (w *world) findOn(t *testing.T, src netip.Addr, base int, id uint32, want int) []int {
	t.Helper()
	var ports []int
	for k := 0; k < 200 && len(ports) < want; k++ {
		pe, err := w.flowPE(nodeOf(src), src, base+k)
		if err != nil {
			t.Fatalf("probe %s:%d: %v", src, base+k, err)
		}
		if pe == id {
			ports = append(ports, base+k)
		}
	}
	if len(ports) < want {
		t.Fatalf("found only %d of %d flows from %s on PE %d", len(ports), want, src, id)
	}
	return ports
}

// testDrain: pe2 gets SIGTERM (deregisters, keeps serving): its established
// connections through either node keep echoing, new connections avoid it.
func testDrain(t *testing.T, w *world) {
	id := w.peIDs[2]
	var open []*conn
	defer func() {
		for _, c := range open {
			c.close()
		}
	}()
	for _, src := range []netip.Addr{clientA, clientB} { // node 1, node 2
		for _, p := range w.findOn(t, src, 44000, id, 2) {
			c, err := w.dial(src, p, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, c)
			if err := c.echo("before", 2*time.Second); err != nil {
				t.Fatalf("flow %s:%d to pe2: %v", src, p, err)
			}
		}
	}
	w.peProcs[2].signal(syscall.SIGTERM)
	w.peProcs[2].waitLog(t, "deregistered", 5*time.Second)
	// pe2's home registrar is node 2; node 1 learns of the deregistration
	// over ENRP. Both must keep the PE as draining.
	for i := 2; i >= 1; i-- {
		if err := w.gaugeWithin(i, "rspxdp_dataplane_pool_elements", `{state="draining"}`, 1, 3*time.Second); err != nil {
			t.Errorf("node %d (pe2's home: %v): %v", i, i == 2, err)
		}
	}
	for r := 0; r < 3; r++ {
		for k, c := range open {
			node := 1 + k/2
			// A TCP connection cannot move to another PE: steered
			// elsewhere, it is reset.
			if err := c.echo(fmt.Sprintf("draining %d", r), 2*time.Second); err != nil {
				t.Errorf("established flow from port %d via node %d, round %d after the drain: %v", c.port, node, r, err)
				if node == 1 && r == 0 {
					t.Errorf("node 1 is not pe2's home registrar: it learns the deregistration as an ENRP Handle Update DEL_PE, which enrp/peers.go (onHandleUpdate) applies with hs.Remove, not as a drain")
				}
			}
		}
	}
	const n = 20
	drainLabel := `pe="` + wire.FormatID(id) + `"`
	for s, src := range []netip.Addr{clientA, clientB} {
		before := w.mustScrape(t, s+1)
		for k := 0; k < n; k++ {
			if err := w.once(src, 45000+k); err != nil {
				t.Fatalf("new connection via node %d: %v", s+1, err)
			}
		}
		after := w.mustScrape(t, s+1)
		if d := after.Sum("rspxdp_pe_new_flows_total", drainLabel) - before.Sum("rspxdp_pe_new_flows_total", drainLabel); d != 0 {
			t.Errorf("node %d steered %v of %d new connections to the draining PE", s+1, d, n)
		}
		if d := after.Sum("rspxdp_pe_new_flows_total") - before.Sum("rspxdp_pe_new_flows_total"); d != n {
			t.Errorf("node %d counted %v new flows for %d new connections", s+1, d, n)
		}
	}
	if w.peProcs[2].exited() {
		t.Errorf("the draining PE exited with connections open")
	}
	if !t.Failed() {
		t.Logf("drain: %d established connections (2 per node) kept echoing 3 rounds after SIGTERM; %d new connections per node avoided the draining PE", len(open), n)
	}
}

// testDeath: pe1 is killed (SIGKILL); flows that were on it are answered by
// another PE at both nodes. The figure is the time from the kill to the
// first re-sent flow (same 5-tuple) answered by another PE, per node.
func testDeath(t *testing.T, w *world) {
	w.killAndMeasure(t, "kill -9 of a PE", func() { w.peProcs[1].signal(syscall.SIGKILL) }, w.peIDs[1], 46000, false)
	for i := 1; i <= 2; i++ {
		w.waitGauge(t, i, "rspxdp_dataplane_pool_elements", `{state="active"}`, 1, 5*time.Second)
	}
}

// killAndMeasure finds flows on PE id through each node (from clientA via
// node 1, clientB via node 2), kills p with SIGKILL and measures, per node,
// the time until one of those flows, re-sent with the same 5-tuple, is
// answered by another PE.
//
// With hostDown the kill is the PE's host vanishing (its link cut): nothing
// closes its connections, so an established connection through each node is
// also checked to be moved off it by its next data packet (and reset by the
// PE it lands on), which the node counts as resteered.
func (w *world) killAndMeasure(t *testing.T, what string, kill func(), id uint32, base int, hostDown bool) {
	t.Helper()
	srcs := []netip.Addr{clientA, clientB}
	var ports [2][]int
	var held [2]*conn // an established connection to the PE, per node
	for s, src := range srcs {
		found := w.findOn(t, src, base, id, 5)
		ports[s] = found[:4]
		c, err := w.dial(src, found[4], 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.close()
		if err := c.echo("before", 2*time.Second); err != nil {
			t.Fatal(err)
		}
		held[s] = c
	}
	var before [2]metricSet
	for s := range srcs {
		before[s] = w.mustScrape(t, s+1)
	}
	killed := time.Now()
	kill()
	var wg sync.WaitGroup
	var took [2]time.Duration
	var errs [2]error
	for s := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := killed.Add(5 * time.Second)
			for time.Now().Before(deadline) {
				for _, p := range ports[s] {
					// The dead PE cannot answer: its process, its
					// listener and its decapsulation program are
					// gone (or its link), so its packets are
					// dropped. A short dial timeout keeps the
					// figure's resolution (it overstates by at
					// most that); a longer one after a second
					// lets a loaded machine succeed.
					timeout := 10 * time.Millisecond
					if time.Since(killed) > time.Second {
						timeout = 200 * time.Millisecond
					}
					c, err := w.dial(srcs[s], p, timeout)
					if err != nil {
						continue
					}
					at := time.Since(killed)
					err = c.echo("moved?", time.Second)
					c.close()
					if err != nil {
						continue
					}
					took[s] = at
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
			errs[s] = fmt.Errorf("no flow of the killed PE answered from another PE within 5s")
		}()
	}
	wg.Wait()
	for s := range srcs {
		if errs[s] != nil {
			t.Errorf("node %d after %s: %v", s+1, what, errs[s])
			continue
		}
		t.Logf("failover node %d: %v from %s to the first packet of one of its flows answered by another PE (keep-alive 100ms/100ms)", s+1, took[s].Round(time.Millisecond), what)
		if took[s] > 2*time.Second {
			t.Errorf("node %d failover took %v (bound 2s, target 300ms)", s+1, took[s])
		}
	}
	fmt.Printf("EVIDENCE failover after %s: node1 %d ms, node2 %d ms (target < 300 ms; 0 = never)\n", what, took[0].Milliseconds(), took[1].Milliseconds())
	// Every flow of the dead PE now lands elsewhere, at both nodes, and
	// the nodes counted moving their connection entries.
	for s, src := range srcs {
		if errs[s] != nil {
			continue
		}
		if hostDown {
			// A SYN is always steered afresh; the next data packet
			// of a connection established on the dead PE finds its
			// entry pointing at a PE no longer up and is moved.
			err := held[s].echo("still there?", 2*time.Second)
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("node %d: a connection established on the dead PE, sending data: %v, want a reset from the PE it moved to", s+1, err)
			}
			after := w.mustScrape(t, s+1)
			if d := after.Sum("rspxdp_conntable_resteered_total") - before[s].Sum("rspxdp_conntable_resteered_total"); d < 1 {
				t.Errorf("node %d: rspxdp_conntable_resteered_total grew by %v after a dead PE's established flow sent data", s+1, d)
			}
		}
		for _, p := range ports[s] {
			pe, err := w.flowPE(s+1, src, p)
			if err != nil || pe == id {
				t.Errorf("node %d: flow %s:%d after failover: PE %d, %v", s+1, src, p, pe, err)
			}
		}
	}
}

// testDeathAfterRestart: a PE registers, node 1 restarts (adopting it from
// the pins), and the PE dies while the restarted node's adoption grace
// lasts: the handlespace, synchronised from node 2, no longer has it, so
// both nodes must move its flows as fast as in testDeath.
func testDeathAfterRestart(t *testing.T, w *world) {
	// A new PE in pe1's namespace (its earlier PE processes were killed).
	const id = 4
	p := startPE(w.root, w.pes[1], "pe1-again", id, []string{lbAddr(2).String() + ":3863", lbAddr(1).String() + ":3863"})
	p.waitLog(t, "pool", 15*time.Second)
	for i := 1; i <= 2; i++ {
		w.waitGauge(t, i, "rspxdp_dataplane_pool_elements", `{state="active"}`, 2, 5*time.Second)
	}
	old := w.nodes[1]
	old.signal(syscall.SIGTERM)
	select {
	case <-old.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("node 1 did not exit within 10s of SIGTERM")
	}
	w.nodes[1] = start(w.root, w.lbs[1], "node1-restarted-again", w.nodeArgs[1]...)
	w.nodes[1].waitLog(t, "adopted pinned data-plane state", 15*time.Second)
	w.waitGauge(t, 1, "rspxdp_pool_elements", `{state="active"}`, 2, 5*time.Second)
	w.killAndMeasure(t, "kill -9 of a PE right after node 1 restarted", func() { p.signal(syscall.SIGKILL) }, id, 47000, false)
	if t.Failed() {
		t.Errorf("the restarted node keeps adopted PEs for its whole grace (3 x max(keep-alive interval, 5s) = 15s) even when its synchronised handlespace has removed them: node/sync.go (Syncer.desired) re-adds them as active")
	}
}

// testHostDeath: a PE's host vanishes (its switch port goes down, the PE
// process keeps running unreachable): only the keep-alives can tell, nothing
// closes a connection. Failover is measured at both nodes, and connections
// established on the PE are moved by their next packet.
func testHostDeath(t *testing.T, w *world) {
	const id = 5
	// In pe1's namespace: its PE process was killed, so e0 is free for a
	// new decapsulation program.
	p := startPE(w.root, w.pes[1], "pe1-third", id, []string{lbAddr(1).String() + ":3863", lbAddr(2).String() + ":3863"})
	p.waitLog(t, "pool", 15*time.Second)
	for i := 1; i <= 2; i++ {
		// The handlespace, not the data plane: node 1 may still hold
		// adopted PEs from its restart.
		w.waitGauge(t, i, "rspxdp_pool_elements", `{state="active"}`, 2, 5*time.Second)
	}
	port, err := w.sw.Netlink().LinkByName("s-pe1")
	must(t, err)
	w.killAndMeasure(t, "the link of a PE's host going down", func() {
		if err := w.sw.Netlink().LinkSetDown(port); err != nil {
			t.Errorf("cut pe1's link: %v", err)
		}
	}, id, 48000, true)
	// Leave pe1's namespace usable for the later steps: the PE process
	// gone, then the link back.
	p.signal(syscall.SIGKILL)
	<-p.done
	must(t, w.sw.Netlink().LinkSetUp(port))
}
