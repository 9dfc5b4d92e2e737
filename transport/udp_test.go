package transport

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func TestAnnounceUnicast(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rcvs []*AnnounceReceiver
	var dests []netip.AddrPort
	for i := 0; i < 2; i++ {
		r, err := ListenAnnounces(AnnounceReceiverConfig{Addr: netip.MustParseAddrPort("127.0.0.1:0"), Logger: quietConfig(t, ASAP).Logger})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rcvs = append(rcvs, r)
		dests = append(dests, r.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	s, err := NewAnnounceSender(AnnounceSenderConfig{Unicast: dests, Local: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	from := s.LocalAddr().(*net.UDPAddr).AddrPort()

	// Garbage first (straight to the first receiver), then a real announce:
	// the receiver drops the garbage and returns the announce.
	raw, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dests[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, g := range [][]byte{{1, 2}, {1, 0, 0, 2}, {1, 0, 0, 40, 0, 0}} {
		raw.Write(g)
	}
	want := msg(0x0b, 40, 3) // ASAP Server Announce
	if err := s.Send(ctx, want); err != nil {
		t.Fatal(err)
	}
	for i, r := range rcvs {
		got, src, err := r.Receive(ctx)
		if err != nil {
			t.Fatalf("receiver %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("receiver %d: got % x", i, got)
		}
		if src != from {
			t.Errorf("receiver %d: source %v, want %v", i, src, from)
		}
	}
	// Receive honours ctx.
	short, c2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer c2()
	if _, _, err := rcvs[0].Receive(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("receive with expiring ctx: %v", err)
	}
	if err := s.Send(ctx, []byte{1, 0, 0, 9}); err == nil {
		t.Error("sender sent a message whose length field is wrong")
	}
}

func TestAnnounceConfigErrors(t *testing.T) {
	for name, cfg := range map[string]AnnounceSenderConfig{
		"no destination":    {},
		"group not mcast":   {Group: netip.MustParseAddrPort("10.0.0.1:3863")},
		"unicast port 0":    {Unicast: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:0")}},
		"unknown interface": {Group: netip.MustParseAddrPort("239.0.0.50:3863"), Interface: "no-such-if0"},
	} {
		if s, err := NewAnnounceSender(cfg); err == nil {
			s.Close()
			t.Errorf("%s: accepted", name)
		}
	}
	if r, err := ListenAnnounces(AnnounceReceiverConfig{Group: netip.MustParseAddr("10.1.1.1")}); err == nil {
		r.Close()
		t.Error("receiver joined a unicast address as a group")
	}
}

// TestAnnounceMulticast sends ASAP and ENRP announces to rsplib's groups in
// a network namespace of its own (loopback with multicast on), so nothing
// leaves the test.
func TestAnnounceMulticast(t *testing.T) {
	testenv.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var asapRcv [2]*AnnounceReceiver
	var enrpRcv, unicastRcv *AnnounceReceiver
	var asapSend, enrpSend *AnnounceSender
	inNetns(t, func() {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetMulticastOn(lo); err != nil {
			t.Fatal(err)
		}
		open := func(g *net.UDPAddr) *AnnounceReceiver {
			r, err := ListenAnnounces(AnnounceReceiverConfig{
				Addr:      netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(g.Port)),
				Group:     g.AddrPort().Addr().Unmap(),
				Interface: "lo",
				Logger:    quietConfig(t, ASAP).Logger,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			return r
		}
		asapRcv[0], asapRcv[1] = open(ASAP.AnnounceGroup()), open(ASAP.AnnounceGroup())
		enrpRcv = open(ENRP.AnnounceGroup())
		var err2 error
		unicastRcv, err2 = ListenAnnounces(AnnounceReceiverConfig{Addr: netip.MustParseAddrPort("127.0.0.1:0")})
		if err2 != nil {
			t.Fatal(err2)
		}
		t.Cleanup(func() { unicastRcv.Close() })
		send := func(p Protocol, unicast ...netip.AddrPort) *AnnounceSender {
			s, err := NewAnnounceSender(AnnounceSenderConfig{
				Group: p.AnnounceGroup().AddrPort(), Unicast: unicast,
				Interface: "lo", TTL: 1, Loopback: true,
				Local: netip.MustParseAddrPort("127.0.0.1:0"),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		asapSend = send(ASAP, unicastRcv.LocalAddr().(*net.UDPAddr).AddrPort())
		enrpSend = send(ENRP)
	})

	asapMsg, enrpMsg := msg(0x0b, 24, 1), msg(0x0a, 32, 2)
	if err := asapSend.Send(ctx, asapMsg); err != nil {
		t.Fatal(err)
	}
	if err := enrpSend.Send(ctx, enrpMsg); err != nil {
		t.Fatal(err)
	}
	expect := func(name string, r *AnnounceReceiver, want []byte, from *AnnounceSender) {
		got, src, err := r.Receive(ctx)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: got % x, want % x", name, got, want)
		}
		if src != from.LocalAddr().(*net.UDPAddr).AddrPort() {
			t.Errorf("%s: source %v, want %v", name, src, from.LocalAddr())
		}
	}
	expect("ASAP group member 1", asapRcv[0], asapMsg, asapSend)
	expect("ASAP group member 2", asapRcv[1], asapMsg, asapSend)
	expect("ENRP group member", enrpRcv, enrpMsg, enrpSend)
	expect("unicast peer of the ASAP sender", unicastRcv, asapMsg, asapSend)
	// Each group carries only its own protocol.
	quiet, c2 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer c2()
	if got, _, err := enrpRcv.Receive(quiet); err == nil {
		t.Fatalf("ENRP group member also got % x", got)
	}
}

// inNetns runs f on a locked OS thread inside a fresh network namespace
// and switches back. Sockets opened in f stay in that namespace; the
// namespace disappears when the last of them closes.
func inNetns(t *testing.T, f func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("current netns: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("new netns: %v", err)
	}
	defer ns.Close()
	defer func() {
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime discards it with the
			// goroutine rather than reuse a thread in the wrong namespace.
			t.Errorf("back to the original netns: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	f()
}

// TestAnnouncePortShared: an announce receiver binds a port another socket
// holds with SO_REUSEADDR and SO_REUSEPORT, as rsplib's registrar holds
// 3863 for its server announces (issue 15: "--announces :3863" failed with
// "address already in use" next to rspregistrar).
func TestAnnouncePortShared(t *testing.T) {
	for _, tc := range []struct{ name, network, addr string }{
		{"ipv4", "udp4", "127.0.0.1:0"},
		{"wildcard", "udp4", "0.0.0.0:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// rsplib's setReusable: SO_REUSEADDR and SO_REUSEPORT.
			lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
				return rc.Control(func(fd uintptr) {
					_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
					_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
				})
			}}
			other, err := lc.ListenPacket(context.Background(), tc.network, tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			ap := other.LocalAddr().(*net.UDPAddr).AddrPort()
			r, err := ListenAnnounces(AnnounceReceiverConfig{Addr: ap, Logger: quietConfig(t, ASAP).Logger})
			if err != nil {
				t.Fatalf("port %d held with SO_REUSEADDR/SO_REUSEPORT: %v", ap.Port(), err)
			}
			r.Close()
		})
	}
}
