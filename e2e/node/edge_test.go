package nodee2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/rspxdp/rspxdp/bpf"
	"github.com/rspxdp/rspxdp/internal/netns"
	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/loader/loadertest"
)

// The edge host of the README: the node has a client side (eth0, where the
// VIPs' clients are and where the XDP program runs) and a control side
// (eth1, where the PEs register and are reached by XDP_REDIRECT).
//
//	client  c0 10.1.0.2 ── eth0 10.1.0.1 [node] eth1 10.2.0.1 ── p0 10.2.0.2  pe
//	                                                         lo: 10.200.1.1, 10.200.1.2
//
// The PE answers the client directly (DSR): its replies are routed back
// through the node's kernel (ip_forward), not through XDP.
var (
	edgeClient  = netip.MustParseAddr("10.1.0.2")
	edgeNodeCli = netip.MustParseAddr("10.1.0.1")
	edgeNodeCtl = netip.MustParseAddr("10.2.0.1")
	edgePE      = netip.MustParseAddr("10.2.0.2")
	edgeVIP1    = netip.MustParseAddrPort("10.200.1.1:80")
	edgeVIP2    = netip.MustParseAddrPort("10.200.1.2:80")
)

const edgeMetrics = "127.0.0.1:9464" // the node's default, inside its namespace

// dialFrom opens a TCP connection from inside ns.
func dialFrom(ns *netns.NS, dst netip.AddrPort, timeout time.Duration) (*conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", dst.String(), timeout)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &conn{c: c, r: bufio.NewReader(c)}, nil
}

// edgeConfig writes the node's configuration file with the given VIPs
// (pool web), in the form the README shows.
func edgeConfig(t *testing.T, path string, vips ...netip.AddrPort) {
	t.Helper()
	var b strings.Builder
	b.WriteString("vips:\n")
	for _, v := range vips {
		fmt.Fprintf(&b, "  - {handle: web, address: %q, protocol: tcp}\n", v)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestEdgeHost is issue 14's end-to-end test: the README's node example on
// a host with a client side and a control side. Traffic flows to a PE
// behind the other interface; the client side can neither register, nor
// resolve, nor reach ENRP (and the drops are counted); SIGHUP reloads a
// changed VIP list without dropping an established flow; a service entry
// deleted from the kernel map is repaired by the next reconciliation.
func TestEdgeHost(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "iproute2")
	rspxdpBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, nodeNS, peNS := netns.New(t, "ecli"), netns.New(t, "enode"), netns.New(t, "epe")
	_, _, err := netns.Veth(cli, "c0", nodeNS, "eth0")
	must(t, err)
	_, _, err = netns.Veth(nodeNS, "eth1", peNS, "p0")
	must(t, err)
	must(t, cli.AddAddr("c0", netip.PrefixFrom(edgeClient, 24)))
	must(t, nodeNS.AddAddr("eth0", netip.PrefixFrom(edgeNodeCli, 24)))
	must(t, nodeNS.AddAddr("eth1", netip.PrefixFrom(edgeNodeCtl, 24)))
	must(t, peNS.AddAddr("p0", netip.PrefixFrom(edgePE, 24)))
	for _, v := range []netip.AddrPort{edgeVIP1, edgeVIP2} {
		must(t, peNS.AddAddr("lo", netip.PrefixFrom(v.Addr(), 32)))
	}
	must(t, cli.AddRoute(netip.MustParsePrefix("10.200.1.0/24"), edgeNodeCli))
	must(t, cli.AddRoute(netip.MustParsePrefix("10.2.0.0/24"), edgeNodeCli)) // the control side, to try it
	must(t, peNS.AddRoute(netip.MustParsePrefix("10.1.0.0/24"), edgeNodeCtl))
	must(t, nodeNS.Sysctl("net/ipv4/ip_forward", "1"))
	for _, k := range []string{"all", "eth1"} {
		must(t, nodeNS.Sysctl("net/ipv4/conf/"+k+"/rp_filter", "0"))
	}
	for _, k := range []string{"all", "p0"} {
		must(t, peNS.Sysctl("net/ipv4/conf/"+k+"/rp_filter", "0"))
	}
	for _, e := range []struct {
		ns  *netns.NS
		if_ string
	}{{cli, "c0"}, {nodeNS, "eth0"}, {nodeNS, "eth1"}, {peNS, "p0"}} {
		must(t, e.ns.TxChecksumOff(ctx, e.if_))
	}

	// The README: `rspxdp node -i eth0 --vip web=10.200.1.1:80/tcp --peer
	// 192.0.2.2:9901`, with the VIP list in its configuration file so that
	// SIGHUP can change it; a private bpffs and a short reconcile period
	// are the test's only additions.
	cfgPath := filepath.Join(t.TempDir(), "rspxdp.yaml")
	edgeConfig(t, cfgPath, edgeVIP1)
	pinDir := loadertest.PinDir(t)
	node := start(t, nodeNS, "node", "node", "--config", cfgPath, "-i", "eth0", "--peer", "192.0.2.2:9901",
		"--pin-dir", pinDir, "--reconcile-every", "1s")
	node.waitLog(t, "node running", 15*time.Second)
	// The README's PE, registering on the control side.
	pe := start(t, peNS, "pe", "pe", "--pool", "web", "--registrar", edgeNodeCtl.String()+":3863",
		"--listen", "0.0.0.0:80", "--service", "echo", "--unaware", "--decap", "p0")
	pe.waitLog(t, "pool", 15*time.Second)
	waitMetric(t, nodeNS, "rspxdp_dataplane_pool_elements", `state="active"`, 1, 15*time.Second)

	t.Run("TrafficFlows", func(t *testing.T) {
		before := mustScrapeIn(t, nodeNS)
		for k := 0; k < 5; k++ {
			c, err := dialFrom(cli, edgeVIP1, 3*time.Second)
			if err != nil {
				t.Fatalf("connection %d to %s: %v", k, edgeVIP1, err)
			}
			err = c.echo("hello", 3*time.Second)
			c.close()
			if err != nil {
				t.Fatalf("connection %d: %v", k, err)
			}
		}
		after := mustScrapeIn(t, nodeNS)
		if d := after.Sum("rspxdp_pe_packets_total") - before.Sum("rspxdp_pe_packets_total"); d < 5*3 {
			t.Errorf("PE packets grew by %v for 5 connections", d)
		}
		if d := after.Sum("rspxdp_dataplane_drops_total", `reason="undeliverable"`); d != 0 {
			t.Errorf("%v packets undeliverable", d)
		}
	})

	t.Run("ClientSideCannotRegister", func(t *testing.T) {
		before := mustScrapeIn(t, nodeNS)
		// Registration, as in the issue: a "PE" on the client side.
		rogue := start(t, cli, "rogue-pe", "pe", "--pool", "web", "--registrar", edgeNodeCli.String()+":3863",
			"--listen", "0.0.0.0:7", "--policy", "wrr:100")
		// Resolution, at both of the node's addresses.
		for _, reg := range []netip.Addr{edgeNodeCli, edgeNodeCtl} {
			rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
			out, err := cli.Command(rctx, rspxdpBinary(t), "pu", "--pool", "web", "--registrar", reg.String()+":3863",
				"--timeout", "2s", "resolve").CombinedOutput()
			rcancel()
			if err == nil {
				t.Errorf("resolution from the client side at %s succeeded:\n%s", reg, out)
			}
		}
		// ENRP and the metrics port, and ASAP at the control-side address.
		for _, dst := range []string{"10.1.0.1:9901", "10.2.0.1:9901", "10.2.0.1:3863", "10.1.0.1:9464"} {
			if c, err := dialFrom(cli, netip.MustParseAddrPort(dst), time.Second); err == nil {
				c.close()
				t.Errorf("TCP to %s from the client side connected", dst)
			}
		}
		time.Sleep(3 * time.Second) // the rogue PE's attempts
		after := mustScrapeIn(t, nodeNS)
		if n := after.Sum("rspxdp_pool_elements", `state="active"`); n != 1 {
			t.Errorf("%v active PEs after the client side tried to register, want 1", n)
		}
		drops := after.Sum("rspxdp_dataplane_drops_total", `reason="control_port"`) - before.Sum("rspxdp_dataplane_drops_total", `reason="control_port"`)
		if drops < 6 {
			t.Errorf("control-port drops grew by %v, want every attempt counted", drops)
		}
		rogue.signal(syscall.SIGKILL)
		t.Logf("client side: registration, 2 resolutions, ENRP, metrics and control-side ASAP refused; %v packets dropped as control_port", drops)
	})

	t.Run("ReloadVIPsKeepsFlows", func(t *testing.T) {
		held, err := dialFrom(cli, edgeVIP1, 3*time.Second)
		must(t, err)
		defer held.close()
		must(t, held.echo("before", 3*time.Second))
		if _, err := dialFrom(cli, edgeVIP2, 500*time.Millisecond); err == nil {
			t.Fatalf("%s answered before it was configured", edgeVIP2)
		}
		edgeConfig(t, cfgPath, edgeVIP1, edgeVIP2)
		node.signal(syscall.SIGHUP)
		node.waitLog(t, "reloaded the configuration", 10*time.Second)
		if node.exited() {
			t.Fatal("SIGHUP ended the node")
		}
		if err := held.echo("after the reload", 3*time.Second); err != nil {
			t.Errorf("established flow after the reload: %v", err)
		}
		c, err := dialFrom(cli, edgeVIP2, 3*time.Second)
		if err != nil {
			t.Fatalf("the new VIP %s: %v", edgeVIP2, err)
		}
		defer c.close()
		if err := c.echo("new VIP", 3*time.Second); err != nil {
			t.Errorf("the new VIP: %v", err)
		}
		// A broken file: refused, logged, the node goes on as it was.
		must(t, os.WriteFile(cfgPath, []byte("vips: [{handle: web, address: nonsense}]\n"), 0o600))
		node.signal(syscall.SIGHUP)
		node.waitLog(t, "reload failed", 10*time.Second)
		if err := held.echo("after a failed reload", 3*time.Second); err != nil || node.exited() {
			t.Errorf("after a failed reload: flow %v, node exited %v", err, node.exited())
		}
		edgeConfig(t, cfgPath, edgeVIP1, edgeVIP2)
	})

	t.Run("DeletedMapEntryRepaired", func(t *testing.T) {
		services, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, bpf.LbMapLbServices), nil)
		must(t, err)
		defer services.Close()
		var key bpf.LbVipKey
		a := edgeVIP1.Addr().As4()
		key.Addr.W[0] = binary.LittleEndian.Uint32(a[:])
		key.Port = edgeVIP1.Port()>>8 | edgeVIP1.Port()<<8
		key.Proto, key.Family = 6, 4
		before := mustScrapeIn(t, nodeNS).Sum("rspxdp_dataplane_map_repairs_total", `map="lb_services"`)
		must(t, services.Delete(&key))
		deleted := time.Now()
		var took time.Duration
		for deadline := deleted.Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if err := services.Lookup(&key, new(bpf.LbService)); err == nil {
				took = time.Since(deleted)
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the deleted service entry was not put back within 10s (reconcile every 1s)")
			}
		}
		// Counted and logged right after the round that rewrote it.
		waitMetric(t, nodeNS, "rspxdp_dataplane_map_repairs_total", `map="lb_services"`, before+1, 5*time.Second)
		node.waitLog(t, "repaired a kernel map", 5*time.Second)
		c, err := dialFrom(cli, edgeVIP1, 3*time.Second)
		if err != nil {
			t.Fatalf("after the repair: %v", err)
		}
		defer c.close()
		must(t, c.echo("repaired", 3*time.Second))
		t.Logf("service entry deleted behind the node's back: back in the map after %v (reconcile interval 1s)", took.Round(time.Millisecond))
		// One interval plus the time a loaded machine may take to run
		// the round: a repair waits for the next tick, never longer.
		if took > 3*time.Second {
			t.Errorf("repair took %v, more than the 1s interval allows", took)
		}
	})
}

// waitMetric waits until the sum of metric name over the series whose
// labels contain filter, in ns, equals want.
func waitMetric(t *testing.T, ns *netns.NS, name, filter string, want float64, timeout time.Duration) {
	t.Helper()
	var got float64
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m, err := scrapeIn(ns, edgeMetrics); err == nil {
			if got = m.Sum(name, filter); got == want {
				return
			}
		}
	}
	t.Fatalf("%s{%s} = %v, want %v within %v", name, filter, got, want, timeout)
}

func mustScrapeIn(t *testing.T, ns *netns.NS) metricSet {
	t.Helper()
	m, err := scrapeIn(ns, edgeMetrics)
	must(t, err)
	return m
}
