package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	vnetns "github.com/vishvananda/netns"

	"github.com/rspxdp/rspxdp/internal/offload"
)

const demoUsage = `Usage: rspxdp demo [flags]

A self-contained demonstration on an embedded topology of network namespaces,
as root (BPF, XDP, namespaces):

  client 10.0.1.2 --- l0 10.0.1.1 [rspxdp node: registrar + XDP] --- pe1 10.0.11.2
                                                                  --- pe2 10.0.12.2
                                                                  --- pe3 10.0.13.2

Three pool elements run "rspxdp pe" (echo service) and register under pool
"demo" with the node's registrar; the node steers the client's TCP flows to
the VIP 10.99.0.1:7 to them in XDP (IPIP to the PE, decapsulated there,
replies straight to the client). The demo then:
  1. opens new connections and prints how the data plane spread them;
  2. drains a PE (SIGTERM: it deregisters, keeps serving open connections):
     open connections keep working, new ones avoid it;
  3. kills a PE (SIGKILL): keep-alives (500ms/500ms) notice, the node moves
     its flows; prints the measured failover time;
and removes everything it made, also on Ctrl-C (exit status 130). Besides
root it needs only the ip command (iproute2): offloads and sysctls are set
through the kernel's interfaces, not through ethtool or sysctl binaries.

Examples:
  sudo rspxdp demo
  sudo rspxdp demo --connections 600 -v   # more flows, show the processes' logs`

// The demo's names and addresses; namespaces carry a fixed prefix so a run
// can remove what a killed earlier run left behind.
const (
	demoPrefix  = "rspxdp-demo-"
	demoVIP     = "10.99.0.1"
	demoPort    = 7
	demoPool    = "demo"
	demoClient  = "10.0.1.2"
	demoLB      = "10.0.1.1"
	demoMetrics = "127.0.0.1:9464"
	demoPEs     = 3
	demoLock    = "/run/rspxdp-demo.lock"
	// demoKeepAlive is the keep-alive interval and timeout: short, so the
	// failover is quick, but not so short that a PE on a busy machine
	// misses one (100ms and 200ms both did, on a loaded 2-core host, and
	// the demo then lost all three PEs).
	demoKeepAlive = 500 * time.Millisecond
)

func demoPEAddr(i int) string { return fmt.Sprintf("10.0.1%d.2", i) }
func demoGW(i int) string     { return fmt.Sprintf("10.0.1%d.1", i) }

// demoPEID is the pool element identifier pe<i> registers with, so the
// node's per-PE counters can be named.
func demoPEID(i int) int { return 100 + i }

type demo struct {
	env     *cliEnv
	self    string
	verbose bool
	conns   int
	start   time.Time
	bpffs   string
	// logs holds the processes' output in memory: the demo leaves no file
	// behind, and prints the tail when it fails.
	logs *tailBuffer

	mu    sync.Mutex
	procs map[string]*exec.Cmd
}

func runDemo(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "demo", demoUsage)
	conns := fs.Int("connections", 300, "new connections per measurement")
	verbose := fs.Bool("v", false, "copy the node's and PEs' logs to stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if *conns < 10 || *conns > 5000 {
		return usagef("--connections %d: want 10 to 5000", *conns)
	}
	if os.Geteuid() != 0 {
		return errors.New("the demo needs root (BPF, XDP, network namespaces): run it with sudo")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("the demo needs the ip command: apt-get install -y iproute2")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	// One demo at a time: its namespaces have fixed names, and a second
	// run's clean-up of "leftovers" would tear down the first one's.
	lock, err := os.OpenFile(demoLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("demo lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("another rspxdp demo is running (it holds %s)", demoLock)
	}
	d := &demo{env: env, self: self, verbose: *verbose, conns: *conns, start: time.Now(),
		procs: map[string]*exec.Cmd{}, logs: newTailBuffer(64 << 10)}
	defer d.cleanup()
	err = d.run(ctx)
	if ctx.Err() != nil {
		d.say("interrupted; cleaning up")
		return nil // runMain exits 130 for the SIGINT
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "last lines of the node's and PEs' output:\n%s", d.logs.tail(40))
	}
	return err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

// tail returns the last n lines, each indented.
func (t *tailBuffer) tail(n int) string {
	t.mu.Lock()
	lines := strings.Split(strings.TrimRight(string(t.b), "\n"), "\n")
	t.mu.Unlock()
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

func (d *demo) say(format string, a ...any) {
	fmt.Fprintf(d.env.stdout, "[%5.1fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, a...))
}

func (d *demo) run(ctx context.Context) error {
	d.removeLeftovers()
	d.say("building the topology: client, node, %d PEs in network namespaces", demoPEs)
	if err := d.buildTopology(ctx); err != nil {
		return fmt.Errorf("topology: %w", err)
	}
	dir, err := os.MkdirTemp("/run", "rspxdp-demo-")
	if err != nil {
		return err
	}
	d.bpffs = dir
	// Pins live on a bpffs of the root mount namespace: `ip netns exec`
	// remounts /sys, so /sys/fs/bpf inside it would be a private instance.
	if err := syscall.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		return fmt.Errorf("mount bpffs on %s: %w", dir, err)
	}

	if err := d.startNode(ctx); err != nil {
		return err
	}
	for i := 1; i <= demoPEs; i++ {
		if err := d.startPE(ctx, i); err != nil {
			return err
		}
	}
	if err := d.waitPEs(ctx, demoPEs, 15*time.Second); err != nil {
		return err
	}
	d.say("%d PEs registered under pool %q; the node programmed them into XDP", demoPEs, demoPool)

	// 1. Distribution.
	before, err := d.scrape(ctx)
	if err != nil {
		return err
	}
	syn0 := synRetrans()
	ok, failed := d.burst(ctx, d.conns, 20000)
	after, err := d.scrape(ctx)
	if err != nil {
		return err
	}
	d.say("%d new connections to %s:%d (%d answered, %d failed); new flows per PE, from the XDP counters:", d.conns, demoVIP, demoPort, ok, failed)
	d.printShares(before, after, ok+failed, synRetrans()-syn0)
	if failed > 0 {
		return fmt.Errorf("%d of %d connections failed with every PE up", failed, d.conns)
	}

	// 2. Drain pe2 with open connections.
	open, err := d.openConns(ctx, 12, 30000)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range open {
			reset(c)
		}
	}()
	if err := d.signal("pe2", syscall.SIGTERM); err != nil {
		return err
	}
	if err := d.waitState(ctx, "pe2", "draining", 5*time.Second); err != nil {
		return err
	}
	before, _ = d.scrape(ctx)
	alive := 0
	for _, c := range open {
		if echo(c, "still there?") == nil {
			alive++
		}
	}
	ok, failed = d.burst(ctx, d.conns, 40000)
	after, err = d.scrape(ctx)
	if err != nil {
		return err
	}
	drained := d.peDelta(before, after, "rspxdp_pe_packets_total", "pe2")
	d.say("drained pe2 (SIGTERM: deregistered, still serving its open connections):")
	fmt.Fprintf(d.env.stdout, "          %d/%d open connections still echo; pe2 still got %.0f packets of its open flows\n", alive, len(open), drained)
	fmt.Fprintf(d.env.stdout, "          %d new connections (%d failed): pe2 got %.0f of them\n", ok+failed, failed, d.peDelta(before, after, "rspxdp_pe_new_flows_total", "pe2"))
	if alive != len(open) {
		return fmt.Errorf("drain broke %d open connections", len(open)-alive)
	}
	if n := d.peDelta(before, after, "rspxdp_pe_new_flows_total", "pe2"); n != 0 {
		return fmt.Errorf("the draining PE got %.0f new flows", n)
	}

	// 3. Kill pe1: flows that were on it must move.
	flows := d.flowsOn(ctx, "pe1", 50000)
	if err := d.signal("pe1", syscall.SIGKILL); err != nil {
		return err
	}
	fo, err := d.failover(ctx, flows, 10*time.Second)
	if err != nil {
		return err
	}
	d.say("killed pe1 (SIGKILL): its %d flows answered again from another PE after %d ms (keep-alive %v/%v)", len(flows), fo.Milliseconds(), demoKeepAlive, demoKeepAlive)
	before, _ = d.scrape(ctx)
	syn0 = synRetrans()
	ok, failed = d.burst(ctx, d.conns, 60000)
	after, _ = d.scrape(ctx)
	d.say("%d new connections after the failover (%d failed); new flows per PE:", ok+failed, failed)
	d.printShares(before, after, ok+failed, synRetrans()-syn0)
	st, err := exec.CommandContext(ctx, "ip", "netns", "exec", demoPrefix+"lb", d.self, "status", "--node", demoMetrics).CombinedOutput()
	if err != nil {
		return fmt.Errorf("rspxdp status --node: %v: %s", err, st)
	}
	d.say("the node's data plane now (rspxdp status --node %s):", demoMetrics)
	for _, line := range strings.Split(strings.TrimRight(string(st), "\n"), "\n") {
		fmt.Fprintf(d.env.stdout, "  %s\n", line)
	}
	d.say("done; removing namespaces, processes and pins")
	return nil
}

// removeLeftovers deletes the namespaces of a demo run that was killed
// before it could clean up.
func (d *demo) removeLeftovers() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], demoPrefix) {
			_ = exec.Command("ip", "netns", "del", f[0]).Run()
		}
	}
}

func (d *demo) ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (d *demo) buildTopology(ctx context.Context) error {
	var steps [][]string
	add := func(a ...string) { steps = append(steps, a) }
	for _, ns := range []string{"client", "lb", "pe1", "pe2", "pe3"} {
		add("netns", "add", demoPrefix+ns)
		add("-n", demoPrefix+ns, "link", "set", "lo", "up")
	}
	add("link", "add", "c0", "netns", demoPrefix+"client", "type", "veth", "peer", "name", "l0", "netns", demoPrefix+"lb")
	add("-n", demoPrefix+"client", "addr", "add", demoClient+"/24", "dev", "c0")
	add("-n", demoPrefix+"client", "link", "set", "c0", "up")
	add("-n", demoPrefix+"client", "route", "add", "default", "via", demoLB)
	add("-n", demoPrefix+"lb", "addr", "add", demoLB+"/24", "dev", "l0")
	add("-n", demoPrefix+"lb", "link", "set", "l0", "up")
	for i := 1; i <= demoPEs; i++ {
		pe, lp := demoPrefix+fmt.Sprintf("pe%d", i), fmt.Sprintf("lp%d", i)
		add("link", "add", lp, "netns", demoPrefix+"lb", "type", "veth", "peer", "name", "e0", "netns", pe)
		add("-n", demoPrefix+"lb", "addr", "add", demoGW(i)+"/24", "dev", lp)
		add("-n", demoPrefix+"lb", "link", "set", lp, "up")
		add("-n", pe, "addr", "add", demoPEAddr(i)+"/24", "dev", "e0")
		add("-n", pe, "addr", "add", demoVIP+"/32", "dev", "lo")
		add("-n", pe, "link", "set", "e0", "up")
		add("-n", pe, "route", "add", "default", "via", demoGW(i))
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := d.ip(s...); err != nil {
			return err
		}
	}
	// Forwarding in the node's namespace carries the PEs' direct replies to
	// the client; full checksums on every veth, because native XDP redirect
	// drops partially checksummed packets (measured on this kernel).
	if err := sysctl("lb", "net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	for _, x := range [][2]string{{"client", "c0"}, {"lb", "lp1"}, {"lb", "lp2"}, {"lb", "lp3"}, {"pe1", "e0"}, {"pe2", "e0"}, {"pe3", "e0"}} {
		if err := inNS(x[0], func() error { return offload.TxChecksumOff(x[1]) }); err != nil {
			return fmt.Errorf("namespace %s: %w", x[0], err)
		}
	}
	for i := 1; i <= demoPEs; i++ {
		for _, k := range []string{"net/ipv4/conf/all/rp_filter", "net/ipv4/conf/e0/rp_filter"} {
			if err := sysctl(fmt.Sprintf("pe%d", i), k, "0"); err != nil {
				return err
			}
		}
	}
	return nil
}

// sysctl writes a net.* sysctl of namespace ns: /proc/sys/net reflects the
// namespace of the thread that opens it.
func sysctl(ns, key, value string) error {
	return inNS(ns, func() error {
		if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s%s: %w", key, value, demoPrefix, ns, err)
		}
		return nil
	})
}

// start runs the binary itself with args inside namespace ns, its output
// into the log (and stderr with -v).
func (d *demo) spawn(ctx context.Context, name, ns string, args ...string) (*exec.Cmd, io.Reader, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", demoPrefix + ns, d.self}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	var w io.Writer = io.MultiWriter(d.logs, pw)
	if d.verbose {
		w = io.MultiWriter(d.logs, pw, prefixWriter{d.env.stderr, name})
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", name, err)
	}
	d.mu.Lock()
	d.procs[name] = cmd
	d.mu.Unlock()
	go func() { _ = cmd.Wait(); pw.Close() }()
	return cmd, pr, nil
}

type prefixWriter struct {
	w    io.Writer
	name string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			fmt.Fprintf(p.w, "%-5s| %s", p.name, line)
		}
	}
	return len(b), nil
}

func (d *demo) startNode(ctx context.Context) error {
	_, out, err := d.spawn(ctx, "node", "lb", "node",
		"--id", "1", "-i", "l0", "--redirect", "--mode", "native",
		"--vip", fmt.Sprintf("%s=%s:%d/tcp", demoPool, demoVIP, demoPort),
		"--pin-dir", filepath.Join(d.bpffs, "rspxdp"),
		"--source-v4", demoLB,
		"--asap", "0.0.0.0:3863", "--advertise-asap", demoLB+":3863",
		"--enrp", "127.0.0.1:9901",
		"--keepalive-interval", demoKeepAlive.String(), "--keepalive-timeout", demoKeepAlive.String(),
		"--drain-timeout", "60s", "--reconcile-every", "1s",
		"--metrics", demoMetrics)
	if err != nil {
		return err
	}
	if err := waitLine(ctx, out, "node 0x", 15*time.Second); err != nil {
		return fmt.Errorf("node did not start: %w", err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	d.say("node up in namespace %slb: registrar + XDP on l0, VIP %s:%d/tcp -> pool %q", demoPrefix, demoVIP, demoPort, demoPool)
	return nil
}

func (d *demo) startPE(ctx context.Context, i int) error {
	name := fmt.Sprintf("pe%d", i)
	_, out, err := d.spawn(ctx, name, name, "pe",
		"--pool", demoPool, "--registrar", demoGW(i)+":3863",
		"--listen", fmt.Sprintf("0.0.0.0:%d", demoPort), "--id", strconv.Itoa(demoPEID(i)),
		"--service", "echo", "--unaware", "--policy", "rr", "--decap", "e0", "--drain-timeout", "60s")
	if err != nil {
		return err
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return nil
}

func waitLine(ctx context.Context, r io.Reader, prefix string, timeout time.Duration) error {
	found := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), prefix) {
				found <- nil
				return
			}
		}
		found <- errors.New("process exited")
	}()
	select {
	case err := <-found:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("no %q line within %s", prefix, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// inNS runs fn on a thread in the client namespace: sockets it creates stay
// there.
func inNS(ns string, fn func() error) error {
	h, err := vnetns.GetFromName(demoPrefix + ns)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	defer h.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := vnetns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := vnetns.Set(h); err != nil {
		return err
	}
	defer vnetns.Set(orig)
	return fn()
}

// dialFrom opens a connection from the client to the VIP with a chosen
// source port, so the same port is the same flow every time.
func dialFrom(port int) (net.Conn, error) { return dialFromTimeout(port, time.Second) }

func dialFromTimeout(port int, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNS("client", func() error {
		dl := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(demoClient), Port: port}}
		var err error
		c, err = dl.Dial("tcp", net.JoinHostPort(demoVIP, strconv.Itoa(demoPort)))
		return err
	})
	return c, err
}

// reset closes c with an RST instead of a FIN, so the client's end does not
// sit in TIME_WAIT: the demo reopens the same flow (same source port) to
// watch where the data plane sends it.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

func echo(c net.Conn, msg string) error {
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != msg {
		return fmt.Errorf("echo answered %q to %q", line, msg)
	}
	return nil
}

// burst opens n short connections from source ports base.. and echoes once
// on each.
func (d *demo) burst(ctx context.Context, n, base int) (ok, failed int) {
	for i := 0; i < n && ctx.Err() == nil; i++ {
		c, err := dialFrom(base + i)
		if err == nil {
			err = echo(c, "hello")
			reset(c)
		}
		if err != nil {
			failed++
		} else {
			ok++
		}
	}
	return ok, failed
}

func (d *demo) openConns(ctx context.Context, n, base int) ([]net.Conn, error) {
	var out []net.Conn
	for i := 0; i < n; i++ {
		c, err := dialFrom(base + i)
		if err == nil {
			err = echo(c, "hello")
		}
		if err != nil {
			for _, c := range out {
				c.Close()
			}
			return nil, fmt.Errorf("open connection %d: %w", i, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func (d *demo) signal(name string, sig syscall.Signal) error {
	d.mu.Lock()
	cmd := d.procs[name]
	d.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return fmt.Errorf("%s is not running", name)
	}
	// The process group: ip netns exec execs the binary, so the group is
	// exactly the PE.
	return syscall.Kill(-cmd.Process.Pid, sig)
}

// metrics is one scrape: metric name -> label set -> value.
type metrics map[string]map[string]float64

// sum adds the series of name whose labels contain filter.
func (m metrics) sum(name, filter string) float64 {
	var s float64
	for labels, v := range m[name] {
		if strings.Contains(labels, filter) {
			s += v
		}
	}
	return s
}

func (d *demo) scrape(ctx context.Context) (metrics, error) {
	var body []byte
	err := inNS("lb", func() error {
		c, err := net.DialTimeout("tcp", demoMetrics, 2*time.Second)
		if err != nil {
			return err
		}
		tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return c, nil }}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + demoMetrics + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("scrape the node's metrics: %w", err)
	}
	m := metrics{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		name, labels := line[:sp], ""
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name, labels = line[:i], line[i:sp]
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		if m[name] == nil {
			m[name] = map[string]float64{}
		}
		m[name][labels] = v
	}
	return m, nil
}

// peDelta sums metric name's increase for the PE called pe.
func (d *demo) peDelta(before, after metrics, name, pe string) float64 {
	var sum float64
	for labels, v := range after[name] {
		if d.peName(labels) == pe {
			sum += counterDelta(before[name][labels], v)
		}
	}
	return sum
}

// counterDelta is a counter's increase from before to after. A counter that
// went down was reset (the data plane moved the PE to another counter slot
// when the PE set changed) and counts from zero, as Prometheus's rate()
// treats resets.
func counterDelta(before, after float64) float64 {
	if after < before {
		return after
	}
	return after - before
}

// peName names the PE of a metric's labels. The pe label is written by
// wire.FormatID (0x00000065); ParseUint with base 0 reads it, and a
// decimal label as well.
func (d *demo) peName(labels string) string {
	i := strings.Index(labels, `pe="`)
	if i < 0 {
		return "?"
	}
	v := labels[i+len(`pe="`):]
	if j := strings.IndexByte(v, '"'); j >= 0 {
		v = v[:j]
	}
	id, err := strconv.ParseUint(v, 0, 32)
	if err != nil {
		return "?"
	}
	if id > 100 && id <= 100+demoPEs {
		return fmt.Sprintf("pe%d", id-100)
	}
	return fmt.Sprintf("0x%08x", id)
}

// printShares prints each PE's share of the new flows the XDP counters saw
// between the two scrapes, for conns connections. Every SYN counts as a new
// flow (a SYN always picks a PE afresh), so a SYN the client retransmitted
// counts twice: the client's TCPSynRetrans counter says how often, and the
// total is shown next to the connections so the two add up.
func (d *demo) printShares(before, after metrics, conns int, synRetrans uint64) {
	per := map[string]float64{}
	var total float64
	for labels, v := range after["rspxdp_pe_new_flows_total"] {
		n := counterDelta(before["rspxdp_pe_new_flows_total"][labels], v)
		per[d.peName(labels)] += n
		total += n
	}
	names := make([]string, 0, len(per))
	for n := range per {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		share := 0.0
		if total > 0 {
			share = 100 * per[n] / total
		}
		fmt.Fprintf(&b, "  %s %4.0f (%4.1f%%) %s\n", n, per[n], share, strings.Repeat("#", int(share/2.5)))
	}
	if int(total) != conns {
		fmt.Fprintf(&b, "  (%.0f new flows for %d connections: the client retransmitted %d SYNs, each counted as a new flow)\n",
			total, conns, synRetrans)
	}
	fmt.Fprint(d.env.stdout, b.String())
}

// synRetrans reads the client namespace's count of retransmitted SYNs
// (TcpExt TCPSynRetrans). /proc/thread-self, not /proc/self: the thread,
// not the process's first one, is in the namespace.
func synRetrans() uint64 {
	var n uint64
	_ = inNS("client", func() error {
		b, err := os.ReadFile("/proc/thread-self/net/netstat")
		if err != nil {
			return err
		}
		lines := strings.Split(string(b), "\n")
		for i := 0; i+1 < len(lines); i += 2 {
			keys, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			for j := 1; j < len(keys) && j < len(vals); j++ {
				if keys[0] == "TcpExt:" && keys[j] == "TCPSynRetrans" {
					n, _ = strconv.ParseUint(vals[j], 10, 64)
				}
			}
		}
		return nil
	})
	return n
}

func (d *demo) waitPEs(ctx context.Context, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		m, err := d.scrape(ctx)
		if err == nil && m.sum("rspxdp_dataplane_pool_elements", `state="active"`) >= float64(n) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%d PEs did not all register within %s", n, timeout)
}

func (d *demo) waitState(ctx context.Context, pe, state string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		m, err := d.scrape(ctx)
		if err == nil && m.sum("rspxdp_dataplane_pool_elements", `state="`+state+`"`) >= 1 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not become %s within %s", pe, state, timeout)
}

// flowsOn finds source ports whose flows the data plane sends to pe: a
// connection's new flow is counted on exactly one PE.
func (d *demo) flowsOn(ctx context.Context, pe string, base int) []int {
	var ports []int
	for i := 0; i < 200 && len(ports) < 8 && ctx.Err() == nil; i++ {
		before, err := d.scrape(ctx)
		if err != nil {
			continue
		}
		c, err := dialFrom(base + i)
		if err != nil {
			continue
		}
		_ = echo(c, "which")
		reset(c)
		after, err := d.scrape(ctx)
		if err == nil && d.peDelta(before, after, "rspxdp_pe_new_flows_total", pe) == 1 {
			ports = append(ports, base+i)
		}
	}
	return ports
}

// failover measures from now until every one of the flows is answered.
func (d *demo) failover(ctx context.Context, ports []int, timeout time.Duration) (time.Duration, error) {
	if len(ports) == 0 {
		return 0, errors.New("found no flow on the PE to kill")
	}
	start := time.Now()
	pending := map[int]bool{}
	for _, p := range ports {
		pending[p] = true
	}
	for time.Since(start) < timeout && ctx.Err() == nil {
		for p := range pending {
			// A SYN steered to the dead PE is lost: give up on it
			// quickly and try again rather than wait for the
			// kernel's one-second SYN retransmission.
			c, err := dialFromTimeout(p, 30*time.Millisecond)
			if err != nil {
				continue
			}
			if echo(c, "again") == nil {
				delete(pending, p)
			}
			reset(c)
		}
		if len(pending) == 0 {
			return time.Since(start), nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, fmt.Errorf("%d flows of the killed PE not answered within %s", len(pending), timeout)
}

// cleanup stops every process, deletes the namespaces and the pins. It runs
// on every exit path, Ctrl-C included.
func (d *demo) cleanup() {
	d.mu.Lock()
	for _, cmd := range d.procs {
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		}
	}
	procs := d.procs
	d.mu.Unlock()
	deadline := time.Now().Add(3 * time.Second)
	for _, cmd := range procs {
		for cmd.ProcessState == nil && time.Now().Before(deadline) {
			if syscall.Kill(cmd.Process.Pid, 0) != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	d.removeLeftovers()
	if d.bpffs != "" {
		_ = syscall.Unmount(d.bpffs, 0)
		_ = os.RemoveAll(d.bpffs)
	}
}
