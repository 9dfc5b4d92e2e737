package netns_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	vnetns "github.com/vishvananda/netns"

	"github.com/rspxdp/rspxdp/internal/netns"
	"github.com/rspxdp/rspxdp/internal/offload"
	"github.com/rspxdp/rspxdp/internal/testenv"
)

// TestNamespaceLifecycle checks that a namespace exists, is another
// namespace than the test's, and is gone after its test, even a failed one
// would be: removal is a t.Cleanup.
func TestNamespaceLifecycle(t *testing.T) {
	testenv.RequireRoot(t)
	var name string
	t.Run("inner", func(t *testing.T) {
		n := netns.New(t, "life")
		name = n.Name
		if _, err := os.Stat(n.Path()); err != nil {
			t.Fatalf("namespace mount missing: %v", err)
		}
		root, err := vnetns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		var inside vnetns.NsHandle
		if err := n.Do(func() error {
			var err error
			inside, err = vnetns.Get()
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer inside.Close()
		if inside.Equal(root) {
			t.Fatal("Do ran in the root namespace")
		}
		if !inside.Equal(n.Handle()) {
			t.Fatal("Do ran in a namespace other than the test's")
		}
		after, err := vnetns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer after.Close()
		if !after.Equal(root) {
			t.Fatal("the calling thread did not return to the root namespace")
		}
		// The loopback is up, so local sockets work at once.
		if err := n.Do(func() error {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			defer l.Close()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				return err
			}
			return c.Close()
		}); err != nil {
			t.Fatalf("loopback in namespace: %v", err)
		}
	})
	if _, err := os.Stat("/run/netns/" + name); !os.IsNotExist(err) {
		t.Fatalf("namespace %s still mounted after its test: %v", name, err)
	}
}

// TestVethTraffic connects two namespaces with a veth pair and sends a UDP
// datagram and a TCP connection across, created with Do and used from other
// goroutines.
func TestVethTraffic(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "iproute2")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, b := netns.New(t, "va"), netns.New(t, "vb")
	ea, eb, err := netns.Veth(a, "eth-a", b, "eth-b")
	if err != nil {
		t.Fatal(err)
	}
	if ea.NS != a || eb.NS != b || ea.Index == 0 || len(eb.MAC) != 6 {
		t.Fatalf("bad ends %+v %+v", ea, eb)
	}
	for _, s := range []struct {
		ns  *netns.NS
		if_ string
		p   string
	}{{a, "eth-a", "10.9.0.1/24"}, {b, "eth-b", "10.9.0.2/24"}, {a, "eth-a", "fd09::1/64"}, {b, "eth-b", "fd09::2/64"}} {
		if err := s.ns.AddAddr(s.if_, netip.MustParsePrefix(s.p)); err != nil {
			t.Fatal(err)
		}
	}
	var before, after []string
	err = a.Do(func() (err error) { before, err = offload.TxChecksumsOn("eth-a"); return err })
	if err != nil || len(before) == 0 {
		t.Fatalf("a new veth should offload tx checksums: %v %v", before, err)
	}
	if err := a.TxChecksumOff(ctx, "eth-a"); err != nil {
		t.Fatal(err)
	}
	if err := a.Do(func() (err error) { after, err = offload.TxChecksumsOn("eth-a"); return err }); err != nil || len(after) > 0 {
		t.Fatalf("tx checksum offloads still on after TxChecksumOff: %v %v", after, err)
	}
	// The other end, in another namespace, is untouched.
	if err := b.Do(func() (err error) { after, err = offload.TxChecksumsOn("eth-b"); return err }); err != nil || len(after) == 0 {
		t.Fatalf("eth-b lost its offloads (%v, %v): TxChecksumOff acted outside its namespace", after, err)
	}
	if err := b.AddRoute(netip.MustParsePrefix("10.10.0.0/16"), netip.MustParseAddr("10.9.0.1")); err != nil {
		t.Fatal(err)
	}
	if out, err := b.Run(ctx, "ip", "route", "show", "10.10.0.0/16"); err != nil || !strings.Contains(out, "via 10.9.0.1") {
		t.Fatalf("route not in namespace: %q %v", out, err)
	}
	if err := a.Sysctl("net/ipv4/ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	if out, err := a.Run(ctx, "cat", "/proc/sys/net/ipv4/ip_forward"); err != nil || strings.TrimSpace(out) != "1" {
		t.Fatalf("ip_forward in namespace = %q (%v)", out, err)
	}
	if out, err := b.Run(ctx, "cat", "/proc/sys/net/ipv4/ip_forward"); err != nil || strings.TrimSpace(out) != "0" {
		t.Fatalf("sysctl leaked into another namespace: %q (%v)", out, err)
	}

	for _, tc := range []struct{ addr, from string }{{"10.9.0.2", "10.9.0.1"}, {"[fd09::2]", "fd09::1"}} {
		addr := tc.addr
		var ln net.Listener
		var pc net.PacketConn
		if err := b.Do(func() error {
			var err error
			if ln, err = net.Listen("tcp", addr+":7000"); err != nil {
				return err
			}
			pc, err = net.ListenPacket("udp", addr+":7001")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := ln.Accept()
			if err == nil {
				c.Write([]byte("pong"))
				c.Close()
			}
		}()
		var conn net.Conn
		var uc net.Conn
		if err := a.Do(func() error {
			var err error
			d := net.Dialer{Timeout: 5 * time.Second}
			if conn, err = d.DialContext(ctx, "tcp", addr+":7000"); err != nil {
				return err
			}
			uc, err = d.DialContext(ctx, "udp", addr+":7001")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		k, err := conn.Read(buf)
		if err != nil || string(buf[:k]) != "pong" {
			t.Fatalf("tcp to %s: %q %v", addr, buf[:k], err)
		}
		if _, err := uc.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		pc.SetDeadline(time.Now().Add(5 * time.Second))
		k, from, err := pc.ReadFrom(buf)
		if err != nil || string(buf[:k]) != "ping" {
			t.Fatalf("udp to %s: %q %v", addr, buf[:k], err)
		}
		if ap := netip.MustParseAddrPort(from.String()); ap.Addr() != netip.MustParseAddr(tc.from) {
			t.Fatalf("datagram from %s", from)
		}
		conn.Close()
		uc.Close()
		ln.Close()
		pc.Close()
	}
}

// TestStart checks that a started process runs in the namespace and is
// killed at the end of the test.
func TestStart(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "iproute2")
	var pid int
	t.Run("inner", func(t *testing.T) {
		n := netns.New(t, "start")
		cmd := n.Start(t, "sleep", "30")
		pid = cmd.Process.Pid
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// `ip netns identify` prints the namespace the process is in;
		// the direct child is `ip` exec'ed into sleep, the same pid.
		deadline := time.Now().Add(5 * time.Second)
		for {
			out, err := exec(ctx, "ip", "netns", "identify", itoa(pid))
			if err == nil && strings.TrimSpace(out) == n.Name {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("process %d not in %s: %q %v", pid, n.Name, out, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	if _, err := os.Stat("/proc/" + itoa(pid) + "/status"); err == nil {
		b, _ := os.ReadFile("/proc/" + itoa(pid) + "/status")
		if !strings.Contains(string(b), "zombie") {
			t.Fatalf("process %d still running after its test", pid)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func exec(ctx context.Context, name string, args ...string) (string, error) {
	out, err := osexec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
