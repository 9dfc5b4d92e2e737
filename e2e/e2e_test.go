package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/rspxdp/rspxdp/loader"
)

// TestDecapPath sends hand-built IPIP packets from the LB namespace to each
// PE, with a UDP query from the client to the VIP inside, and expects the
// PE's answer at the client: the decapsulation program, the VIP on the
// loopback and the direct return path work without the load balancer.
func TestDecapPath(t *testing.T) {
	tp := newTopo(t)
	var sink net.PacketConn
	if err := tp.client.Do(func() error {
		var err error
		sink, err = net.ListenPacket("udp", netip.AddrPortFrom(clientV4, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	cport := uint16(sink.LocalAddr().(*net.UDPAddr).Port)

	var fd int
	if err := tp.lb.Do(func() error {
		var err error
		fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_IPIP)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)

	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: clientV4.AsSlice(), DstIP: vipV4.AsSlice()}
	udp := &layers.UDP{SrcPort: layers.UDPPort(cport), DstPort: udpPort}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, udp, gopacket.Payload("?")); err != nil {
		t.Fatal(err)
	}
	inner := buf.Bytes()

	for _, p := range tp.pes {
		before, err := p.decap.Stats()
		if err != nil {
			t.Fatal(err)
		}
		to := &syscall.SockaddrInet4{Addr: peAddr(p.idx, false).As4()}
		got := ""
		for try := 0; try < 5 && got == ""; try++ {
			if err := syscall.Sendto(fd, inner, 0, to); err != nil {
				t.Fatalf("send IPIP to %s: %v", p.name, err)
			}
			sink.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			b := make([]byte, 64)
			n, from, err := sink.ReadFrom(b)
			if err != nil {
				continue
			}
			if f := netip.MustParseAddrPort(from.String()); f.Addr() != vipV4 {
				t.Fatalf("answer from %s, want the VIP (direct server return)", from)
			}
			got = string(b[:n])
		}
		if got != p.name {
			t.Fatalf("IPIP to %s: answer %q, want %q", p.name, got, p.name)
		}
		after, err := p.decap.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if after.DecapV4 == before.DecapV4 {
			t.Errorf("%s: decap counter did not move: %+v", p.name, after)
		}
	}
}

// TestLoadBalancer runs real TCP connections and UDP flows from the client
// namespace through the XDP load balancer to three PEs, over IPv4 and IPv6:
// spread over all PEs (encapsulated, and in L2 DSR mode), a control-plane
// restart that keeps an open connection, a draining PE that keeps its open
// connection while new flows avoid it, and a dead PE whose flows move at
// once.
func TestLoadBalancer(t *testing.T) {
	tp := newTopo(t)
	lb := tp.openLB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	for _, vip := range []netip.Addr{vipV4, vipV6} {
		t.Run("distribution/"+vip.String(), func(t *testing.T) {
			lb.setStates(t, nil)
			const flows = 45
			tcp := map[string]int{}
			udp := map[string]int{}
			for i := 0; i < flows; i++ {
				c, err := dialTCP(ctx, tp.client, vip)
				if err != nil {
					t.Fatal(err)
				}
				name, err := c.ask()
				c.Close()
				if err != nil {
					t.Fatalf("tcp flow %d: %v", i, err)
				}
				tcp[name]++
				u, err := dialUDP(tp.client, vip)
				if err != nil {
					t.Fatal(err)
				}
				name, err = u.ask()
				u.Close()
				if err != nil {
					t.Fatalf("udp flow %d: %v", i, err)
				}
				udp[name]++
			}
			t.Logf("%d TCP connections per PE: %v; %d UDP flows per PE: %v", flows, tcp, flows, udp)
			// Equal weights: 15 expected each; below 5 has a
			// probability under 0.1% for a uniform hash.
			for _, p := range tp.pes {
				if tcp[p.name] < 5 || udp[p.name] < 5 {
					t.Errorf("%s got %d TCP and %d UDP of %d flows: not spread", p.name, tcp[p.name], udp[p.name], flows)
				}
			}
			st, err := lb.l.Stats()
			if err != nil {
				t.Fatal(err)
			}
			k := loader.ServiceKey{VIP: netip.AddrPortFrom(vip, tcpPort), Proto: loader.TCP}
			for i := 1; i <= numPEs; i++ {
				if st.Backends[k][uint32(i)].NewFlows == 0 {
					t.Errorf("LB counters: no new flows to PE %d of %s: %+v", i, k, st.Backends[k])
				}
			}
			// The PEs received the flows encapsulated in the
			// family of their address, and stripped it.
			for _, p := range tp.pes {
				ds, err := p.decap.Stats()
				if err != nil {
					t.Fatal(err)
				}
				if n := map[bool]uint64{false: ds.DecapV4, true: ds.DecapV6}[vip.Is6()]; n == 0 {
					t.Errorf("%s decapsulated no packet for %s: %+v", p.name, vip, ds)
				}
			}
		})
	}

	t.Run("l2dsr", func(t *testing.T) {
		lb.setStates(t, nil)
		k := loader.ServiceKey{VIP: netip.AddrPortFrom(vipV4, tcpPort), Proto: loader.TCP}
		if err := lb.l.UpsertService(loader.Service{ServiceKey: k, L2DSR: true}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := lb.l.UpsertService(loader.Service{ServiceKey: k}); err != nil {
				t.Error(err)
			}
		}()
		before := decapTotals(t, tp)
		seen := map[string]int{}
		for i := 0; i < 30; i++ {
			c, err := dialTCP(ctx, tp.client, vipV4)
			if err != nil {
				t.Fatal(err)
			}
			name, err := c.ask()
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			seen[name]++
		}
		after := decapTotals(t, tp)
		t.Logf("L2 DSR: 30 connections per PE %v; PE ingress decapsulated %d, passed %d",
			seen, after.DecapV4-before.DecapV4, after.Passed-before.Passed)
		for _, p := range tp.pes {
			if seen[p.name] < 2 {
				t.Errorf("%s got %d of 30 connections", p.name, seen[p.name])
			}
		}
		// Only the MAC was rewritten: the PEs got the client's packets
		// as sent, nothing to decapsulate.
		if after.DecapV4 != before.DecapV4 || after.Passed-before.Passed < 30*3 {
			t.Errorf("PE ingress counters moved from %+v to %+v: packets were encapsulated", before, after)
		}
	})

	t.Run("weight0", func(t *testing.T) {
		// A PE whose policy weight drops to 0 but stays active is
		// drained like a deregistered one.
		lb.setStates(t, nil)
		c, err := dialTCP(ctx, tp.client, vipV4)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		pe, err := c.ask()
		if err != nil {
			t.Fatal(err)
		}
		lb.setPEs(t, nil, map[int]uint32{peIndex(t, pe): 0})
		seen := map[string]int{}
		for i := 0; i < 20; i++ {
			n, err := dialTCP(ctx, tp.client, vipV4)
			if err != nil {
				t.Fatal(err)
			}
			got, err := n.ask()
			n.Close()
			if err != nil {
				t.Fatal(err)
			}
			seen[got]++
			if got, err := c.ask(); err != nil || got != pe {
				t.Fatalf("connection to weight-0 %s: %q %v", pe, got, err)
			}
		}
		t.Logf("%s at weight 0; 20 new connections went to %v", pe, seen)
		if seen[pe] != 0 {
			t.Fatalf("%d new connections went to weight-0 %s", seen[pe], pe)
		}
	})

	t.Run("restart", func(t *testing.T) {
		lb.setStates(t, nil)
		c, err := dialTCP(ctx, tp.client, vipV4)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		pe, err := c.ask()
		if err != nil {
			t.Fatal(err)
		}
		lb.restart(t, func() {
			// No control plane: the pinned program and maps carry
			// the established connection and new ones.
			for i := 0; i < 3; i++ {
				if got, err := c.ask(); err != nil || got != pe {
					t.Fatalf("established connection while the loader is down: %q %v (want %s)", got, err, pe)
				}
			}
			n, err := dialTCP(ctx, tp.client, vipV4)
			if err != nil {
				t.Fatalf("new connection while the loader is down: %v", err)
			}
			if _, err := n.ask(); err != nil {
				t.Fatalf("new connection while the loader is down: %v", err)
			}
			n.Close()
		})
		if got, err := c.ask(); err != nil || got != pe {
			t.Fatalf("established connection after the restart: %q %v (want %s)", got, err, pe)
		}
		// The new loader took the services over and programs them.
		lb.setStates(t, map[int]loader.State{peIndex(t, pe): loader.Draining})
		if got, err := c.ask(); err != nil || got != pe {
			t.Fatalf("established connection after draining its PE: %q %v (want %s)", got, err, pe)
		}
		for i := 0; i < 15; i++ {
			n, err := dialTCP(ctx, tp.client, vipV4)
			if err != nil {
				t.Fatal(err)
			}
			got, err := n.ask()
			n.Close()
			if err != nil {
				t.Fatal(err)
			}
			if got == pe {
				t.Fatalf("restarted loader sent a new connection to draining %s", pe)
			}
		}
	})

	parent := t
	for _, vip := range []netip.Addr{vipV4, vipV6} {
		t.Run("drain/"+vip.String(), func(t *testing.T) {
			lb.setStates(t, nil)
			// An established connection, and a UDP flow, to some PE.
			c, err := dialTCP(ctx, tp.client, vip)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			victim, err := c.ask()
			if err != nil {
				t.Fatal(err)
			}
			vi := peIndex(t, victim)
			lb.setStates(t, map[int]loader.State{vi: loader.Draining})
			// The drained PE's existing connection keeps working...
			for i := 0; i < 5; i++ {
				got, err := c.ask()
				if err != nil {
					t.Fatalf("established connection to draining %s broke: %v", victim, err)
				}
				if got != victim {
					t.Fatalf("established connection moved from draining %s to %s", victim, got)
				}
			}
			// ...while no new connection or UDP flow goes there.
			seen := map[string]int{}
			for i := 0; i < 30; i++ {
				n, err := dialTCP(ctx, tp.client, vip)
				if err != nil {
					t.Fatal(err)
				}
				name, err := n.ask()
				n.Close()
				if err != nil {
					t.Fatal(err)
				}
				seen[name]++
				u, err := dialUDP(tp.client, vip)
				if err != nil {
					t.Fatal(err)
				}
				name, err = u.ask()
				u.Close()
				if err != nil {
					t.Fatal(err)
				}
				seen[name]++
			}
			t.Logf("draining %s; 60 new flows went to %v", victim, seen)
			if seen[victim] != 0 {
				t.Fatalf("%d new flows went to draining %s", seen[victim], victim)
			}
			if len(seen) != numPEs-1 {
				t.Errorf("new flows reached %v, want both remaining PEs", seen)
			}
			if got, err := c.ask(); err != nil || got != victim {
				t.Fatalf("established connection after the new flows: %q %v", got, err)
			}
		})

		t.Run("down/"+vip.String(), func(t *testing.T) {
			lb.setStates(t, nil)
			// UDP flows until one lands on every PE, so the victim has one.
			flows := map[string]*udpClient{}
			for i := 0; i < 60 && len(flows) < numPEs; i++ {
				u, err := dialUDP(tp.client, vip)
				if err != nil {
					t.Fatal(err)
				}
				name, err := u.ask()
				if err != nil {
					t.Fatal(err)
				}
				if flows[name] != nil {
					u.Close()
					continue
				}
				flows[name] = u
				defer u.Close()
			}
			if len(flows) < numPEs {
				t.Fatalf("60 UDP flows reached only %d PEs", len(flows))
			}
			tcpc, err := dialTCP(ctx, tp.client, vip)
			if err != nil {
				t.Fatal(err)
			}
			defer tcpc.Close()
			victim, err := tcpc.ask()
			if err != nil {
				t.Fatal(err)
			}
			vi := peIndex(t, victim)
			// The PE dies: its process goes, and the control plane marks it
			// down after the keep-alive failure.
			tp.pes[vi-1].srv.kill()
			lb.setStates(t, map[int]loader.State{vi: loader.Down})
			defer func() { tp.pes[vi-1].srv = startServers(parent, tp.pes[vi-1]) }()

			// Its existing UDP flow moves at once, on the next datagram.
			got, err := flows[victim].ask()
			if err != nil {
				t.Fatalf("flow of dead %s did not move: %v", victim, err)
			}
			if got == victim {
				t.Fatalf("flow still answered by dead %s", victim)
			}
			// Its TCP connection's next segment reaches another PE, which
			// has no such connection and resets it: the client learns at
			// once instead of waiting for a timeout.
			if _, err := tcpc.ask(); err == nil {
				t.Fatalf("TCP connection to dead %s still answered", victim)
			}
			// Flows of live PEs stay where they were.
			for name, u := range flows {
				if name == victim {
					continue
				}
				if got, err := u.ask(); err != nil || got != name {
					t.Errorf("flow of live %s moved to %q (%v)", name, got, err)
				}
			}
			// New flows avoid the dead PE.
			seen := map[string]int{}
			for i := 0; i < 30; i++ {
				c, err := dialTCP(ctx, tp.client, vip)
				if err != nil {
					t.Fatalf("new connection with %s down: %v", victim, err)
				}
				name, err := c.ask()
				c.Close()
				if err != nil {
					t.Fatal(err)
				}
				seen[name]++
			}
			t.Logf("%s down; 30 new connections went to %v", victim, seen)
			if seen[victim] != 0 {
				t.Fatalf("new connections went to dead %s", victim)
			}
			st, err := lb.l.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.Resteered == 0 {
				t.Errorf("LB counted no re-steered flow: %+v", st)
			}
		})
	}
}

// decapTotals sums the decapsulation counters of all PEs.
func decapTotals(t *testing.T, tp *topo) loader.DecapStats {
	t.Helper()
	var sum loader.DecapStats
	for _, p := range tp.pes {
		s, err := p.decap.Stats()
		if err != nil {
			t.Fatal(err)
		}
		sum.DecapV4 += s.DecapV4
		sum.DecapV6 += s.DecapV6
		sum.Passed += s.Passed
	}
	return sum
}

func peIndex(t *testing.T, name string) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(name, "pe%d", &i); err != nil || i < 1 || i > numPEs {
		t.Fatalf("answer %q is no PE name", name)
	}
	return i
}
