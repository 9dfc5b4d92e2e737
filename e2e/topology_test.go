package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/netns"
	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/loader/loadertest"
)

// Addresses of the test topology:
//
//	client ns            LB ns                          PE ns i (i = 1..3)
//	c0 10.0.1.2 ------- l0 10.0.1.1   [XDP LB]
//	   fd00:1::2           fd00:1::1
//	                     lp<i> 10.0.1<i>.1 ----------- e0 10.0.1<i>.2  [XDP decap]
//	                           fd00:1<i>::1                fd00:1<i>::2
//	                                                    lo VIP 10.99.0.1, fd00:99::1
//
// The LB redirects encapsulated packets out of lp<i>; the PE's replies come
// from the VIP and are routed by the LB namespace's kernel straight back to
// the client (direct server return: the XDP program sees only one
// direction).
var (
	clientV4 = netip.MustParseAddr("10.0.1.2")
	clientV6 = netip.MustParseAddr("fd00:1::2")
	lbV4     = netip.MustParseAddr("10.0.1.1")
	lbV6     = netip.MustParseAddr("fd00:1::1")
	vipV4    = netip.MustParseAddr("10.99.0.1")
	vipV6    = netip.MustParseAddr("fd00:99::1")
)

// Ports the PEs serve on the VIP.
const (
	tcpPort = 8080
	udpPort = 8081
)

const numPEs = 3

func peAddr(i int, v6 bool) netip.Addr {
	if v6 {
		return netip.MustParseAddr(fmt.Sprintf("fd00:1%d::2", i))
	}
	return netip.MustParseAddr(fmt.Sprintf("10.0.1%d.2", i))
}

func peGateway(i int, v6 bool) netip.Addr {
	if v6 {
		return netip.MustParseAddr(fmt.Sprintf("fd00:1%d::1", i))
	}
	return netip.MustParseAddr(fmt.Sprintf("10.0.1%d.1", i))
}

func prefix(a netip.Addr, bits int) netip.Prefix { return netip.PrefixFrom(a, bits) }

// topo is the namespaces and links of one test, without any load balancer
// in the LB namespace yet: the caller installs the XDP LB, nftables or
// HAProxy there.
type topo struct {
	client, lb *netns.NS
	pes        [numPEs]*pe
}

// pe is one pool element: its namespace, its decapsulation program and the
// servers that answer with the PE's name.
type pe struct {
	name  string
	idx   int // 1-based
	ns    *netns.NS
	decap *loader.Decap
	srv   *servers
}

// newTopo builds the namespaces, links, addresses and routes, attaches the
// decapsulation program to every PE's link (native mode) and starts its
// servers.
func newTopo(t *testing.T) *topo {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "iproute2")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tp := &topo{client: netns.New(t, "cli"), lb: netns.New(t, "lb")}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := netns.Veth(tp.client, "c0", tp.lb, "l0")
	must(err)
	must(tp.client.AddAddr("c0", prefix(clientV4, 24)))
	must(tp.client.AddAddr("c0", prefix(clientV6, 64)))
	must(tp.client.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), lbV4))
	must(tp.client.AddRoute(netip.MustParsePrefix("::/0"), lbV6))
	// Full checksums from the client: its packets cross native XDP
	// redirect, which drops partially checksummed UDP (shared README).
	must(tp.client.TxChecksumOff(ctx, "c0"))
	must(tp.lb.AddAddr("l0", prefix(lbV4, 24)))
	must(tp.lb.AddAddr("l0", prefix(lbV6, 64)))
	must(tp.lb.Sysctl("net/ipv4/ip_forward", "1"))
	must(tp.lb.Sysctl("net/ipv6/conf/all/forwarding", "1"))

	for i := 1; i <= numPEs; i++ {
		p := &pe{name: fmt.Sprintf("pe%d", i), idx: i, ns: netns.New(t, fmt.Sprintf("pe%d", i))}
		tp.pes[i-1] = p
		lp := fmt.Sprintf("lp%d", i)
		_, _, err := netns.Veth(tp.lb, lp, p.ns, "e0")
		must(err)
		must(tp.lb.AddAddr(lp, prefix(peGateway(i, false), 24)))
		must(tp.lb.AddAddr(lp, prefix(peGateway(i, true), 64)))
		must(tp.lb.TxChecksumOff(ctx, lp))
		must(p.ns.AddAddr("e0", prefix(peAddr(i, false), 24)))
		must(p.ns.AddAddr("e0", prefix(peAddr(i, true), 64)))
		must(p.ns.AddAddr("lo", prefix(vipV4, 32)))
		must(p.ns.AddAddr("lo", prefix(vipV6, 128)))
		must(p.ns.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), peGateway(i, false)))
		must(p.ns.AddRoute(netip.MustParsePrefix("::/0"), peGateway(i, true)))
		must(p.ns.TxChecksumOff(ctx, "e0"))
		// The inner packet arrives on e0 addressed to the VIP on lo:
		// accepted by Linux's weak host model; the client is routed
		// via e0, so reverse-path filtering is satisfied too.
		must(p.ns.Do(func() error {
			var err error
			p.decap, err = loader.OpenDecap(loader.DecapOptions{
				Addrs:      []netip.Addr{peAddr(i, false), peAddr(i, true)},
				Interfaces: []string{"e0"},
				Mode:       loader.ModeNative,
			})
			return err
		}))
		t.Cleanup(func() { p.decap.Close() })
		p.srv = startServers(t, p)
	}
	return tp
}

// openLB loads the XDP load balancer in the LB namespace, attached natively
// to l0 and redirecting to the PE links, with a TCP and a UDP service on the
// IPv4 and the IPv6 VIP, all PEs active.
func (tp *topo) openLB(t *testing.T) *lbHandle {
	t.Helper()
	h := &lbHandle{ns: tp.lb, opts: loader.Options{
		PinDir:     loadertest.PinDir(t),
		Interfaces: []string{"l0"},
		Mode:       loader.ModeNative,
		Redirect:   true,
		SourceV4:   lbV4,
		SourceV6:   lbV6,
	}}
	err := tp.lb.Do(func() error {
		var err error
		h.l, err = loader.Open(h.opts)
		return err
	})
	if err != nil {
		t.Fatalf("open load balancer: %v", err)
	}
	t.Cleanup(func() {
		if err := tp.lb.Do(func() error { return h.l.Close(false) }); err != nil {
			t.Errorf("close load balancer: %v", err)
		}
	})
	for _, k := range services() {
		if err := h.l.UpsertService(loader.Service{ServiceKey: k}); err != nil {
			t.Fatal(err)
		}
	}
	h.setStates(t, map[int]loader.State{})
	return h
}

func services() []loader.ServiceKey {
	return []loader.ServiceKey{
		{VIP: netip.AddrPortFrom(vipV4, tcpPort), Proto: loader.TCP},
		{VIP: netip.AddrPortFrom(vipV4, udpPort), Proto: loader.UDP},
		{VIP: netip.AddrPortFrom(vipV6, tcpPort), Proto: loader.TCP},
		{VIP: netip.AddrPortFrom(vipV6, udpPort), Proto: loader.UDP},
	}
}

// lbHandle drives the loader in the LB namespace: the next-hop resolution
// of SetBackends asks that namespace's neighbour table.
type lbHandle struct {
	ns   *netns.NS
	opts loader.Options
	l    *loader.Loader
}

// restart closes the loader keeping its state (program attached, maps
// pinned), calls between while no control plane runs, and opens a new
// loader on the pinned state, as a restarted rspxdp would.
func (h *lbHandle) restart(t *testing.T, between func()) {
	t.Helper()
	if err := h.ns.Do(func() error { return h.l.Close(true) }); err != nil {
		t.Fatalf("close keeping state: %v", err)
	}
	between()
	if err := h.ns.Do(func() error {
		var err error
		h.l, err = loader.Open(h.opts)
		return err
	}); err != nil {
		t.Fatalf("reopen on pinned state: %v", err)
	}
}

// setStates programs every service with all PEs, in the given states
// (Active for PEs not listed). PE i has ID i.
func (h *lbHandle) setStates(t *testing.T, states map[int]loader.State) {
	t.Helper()
	h.setPEs(t, states, nil)
}

// setPEs is setStates with weights (1 for PEs not listed).
func (h *lbHandle) setPEs(t *testing.T, states map[int]loader.State, weights map[int]uint32) {
	t.Helper()
	for _, k := range services() {
		v6 := k.VIP.Addr().Is6()
		var bes []loader.Backend
		for i := 1; i <= numPEs; i++ {
			st, ok := states[i]
			if !ok {
				st = loader.Active
			}
			w, ok := weights[i]
			if !ok {
				w = 1
			}
			bes = append(bes, loader.Backend{ID: uint32(i), Addr: peAddr(i, v6), Weight: w, State: st})
		}
		if err := h.ns.Do(func() error { return h.l.SetBackends(k, bes) }); err != nil {
			t.Fatalf("set backends of %s: %v", k, err)
		}
	}
}

// servers are a PE's TCP and UDP servers on the VIP. Each answers every
// line or datagram with the PE's name, so the client learns which PE it
// reached.
type servers struct {
	mu    sync.Mutex
	lns   []net.Listener
	pcs   []net.PacketConn
	conns []net.Conn
	done  bool
}

func startServers(t *testing.T, p *pe) *servers {
	t.Helper()
	s := &servers{}
	err := p.ns.Do(func() error {
		for _, vip := range []netip.Addr{vipV4, vipV6} {
			ln, err := net.Listen("tcp", netip.AddrPortFrom(vip, tcpPort).String())
			if err != nil {
				return err
			}
			pc, err := net.ListenPacket("udp", netip.AddrPortFrom(vip, udpPort).String())
			if err != nil {
				return err
			}
			s.lns = append(s.lns, ln)
			s.pcs = append(s.pcs, pc)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("start servers of %s: %v", p.name, err)
	}
	for _, ln := range s.lns {
		go s.accept(ln, p.name)
	}
	for _, pc := range s.pcs {
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				if n > 0 && buf[0] == '?' {
					pc.WriteTo([]byte(p.name), from)
				}
			}
		}()
	}
	t.Cleanup(s.kill)
	return s
}

func (s *servers) accept(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				if _, err := r.ReadString('\n'); err != nil {
					return
				}
				if _, err := c.Write([]byte(name + "\n")); err != nil {
					return
				}
			}
		}()
	}
}

// kill closes every socket as if the PE process died. Its kernel stays up,
// so packets still reaching it are answered with resets.
func (s *servers) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	for _, ln := range s.lns {
		ln.Close()
	}
	for _, pc := range s.pcs {
		pc.Close()
	}
	for _, c := range s.conns {
		c.Close()
	}
}

// tcpClient is a client connection to a VIP; ask returns the name of the
// PE that answered.
type tcpClient struct {
	c net.Conn
	r *bufio.Reader
}

func dialTCP(ctx context.Context, cli *netns.NS, vip netip.Addr) (*tcpClient, error) {
	var c net.Conn
	err := cli.Do(func() error {
		d := net.Dialer{Timeout: 3 * time.Second}
		var err error
		c, err = d.DialContext(ctx, "tcp", netip.AddrPortFrom(vip, tcpPort).String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", vip, err)
	}
	return &tcpClient{c: c, r: bufio.NewReader(c)}, nil
}

func (tc *tcpClient) ask() (string, error) {
	tc.c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := tc.c.Write([]byte("?\n")); err != nil {
		return "", err
	}
	line, err := tc.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

func (tc *tcpClient) Close() error { return tc.c.Close() }

// udpClient is one UDP flow (one source port) to a VIP.
type udpClient struct{ c net.Conn }

func dialUDP(cli *netns.NS, vip netip.Addr) (*udpClient, error) {
	var c net.Conn
	err := cli.Do(func() error {
		var err error
		c, err = net.Dial("udp", netip.AddrPortFrom(vip, udpPort).String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial udp %s: %w", vip, err)
	}
	return &udpClient{c: c}, nil
}

// ask sends a query and returns the answering PE, retrying a few times
// since datagrams may be lost (the first ones of a flow can race neighbour
// resolution on the PE's reply path).
func (uc *udpClient) ask() (string, error) {
	buf := make([]byte, 64)
	var last error
	for try := 0; try < 5; try++ {
		if _, err := uc.c.Write([]byte("?")); err != nil {
			return "", err
		}
		uc.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := uc.c.Read(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
		last = err
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return "", err
		}
	}
	return "", fmt.Errorf("no answer after 5 tries: %w", last)
}

func (uc *udpClient) Close() error { return uc.c.Close() }
