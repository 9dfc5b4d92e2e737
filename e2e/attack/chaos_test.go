package attack

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/asap"
	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/wire"
)

// heartbeat is the chaos registrars' peer heartbeat (fastTimers).
const heartbeat = 500 * time.Millisecond

// TestChaos stops, kills and impersonates registrars of a three-registrar
// scope holding 30 PEs, and checks after each event that every registrar
// lists every PE with one and the same live owner within a bound (issue 19
// item 6, issue 15 item 7), printing how long that took.
func TestChaos(t *testing.T) {
	regs := make([]*registrar, 3)
	for i := range regs {
		regs[i] = newRegistrar(t, uint32(i+1))
	}
	for i, r := range regs {
		for j, o := range regs {
			if i != j {
				r.args = append(r.args, "--peer", o.enrp)
			}
		}
		r.args = append(r.args, fastTimers...)
		r.start()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const pes = 30
	for i := range pes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		order := []string{regs[i%3].asap, regs[(i+1)%3].asap, regs[(i+2)%3].asap}
		pe, err := asap.Register(ctx, "chaos", ln, asap.WithRegistrars(order...), asap.WithLogger(quiet),
			asap.WithReregistrationInterval(time.Second), asap.WithResponseTimeout(time.Second), asap.WithDialTimeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pe.Close() })
	}
	bound := time.Duration(size(20, 20)) * heartbeat
	settle := func(event string, live []*registrar) {
		t.Helper()
		start := time.Now()
		var why string
		for time.Since(start) < 30*time.Second {
			if why = oneOwner(ctx, live, pes); why == "" {
				took := time.Since(start)
				line := fmt.Sprintf("chaos %-24s one owner per PE at every registrar after %7v (%.1f heartbeats)",
					event, took.Round(time.Millisecond), float64(took)/float64(heartbeat))
				t.Log(line)
				fmt.Println(line)
				if took > bound {
					t.Errorf("%s: converged after %v, want within %v", event, took, bound)
				}
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("%s: no single owner per PE after 30 s: %s", event, why)
	}
	settle("start", regs)

	for _, stall := range []time.Duration{1500 * time.Millisecond, 4 * time.Second} {
		regs[0].signal(syscall.SIGSTOP)
		time.Sleep(stall)
		regs[0].signal(syscall.SIGCONT)
		settle(fmt.Sprintf("SIGSTOP %v", stall), regs)
	}

	regs[1].kill()
	settle("kill -9", []*registrar{regs[0], regs[2]})
	regs[1].start()
	settle("restart", regs)

	// A Leaving Presence in registrar 3's name, on a connection of its own.
	for _, r := range regs[:2] {
		c, err := dial(ctx, wire.ENRP, r.enrp, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		_ = c.send(ctx, msg.Presence{Header: msg.Header{Sender: 3, Receiver: r.id}, Leaving: true,
			Info: msg.ServerInfo{ID: 3, ENRP: netip.MustParseAddrPort(regs[2].enrp)}})
		defer c.close()
	}
	settle("forged leave", regs)
}

// oneOwner says what is wrong with the scope's view of the PEs, or "":
// every registrar must list want PEs, each with the same home everywhere,
// and that home one of the live registrars.
func oneOwner(ctx context.Context, live []*registrar, want int) string {
	homes := map[uint32]uint32{}
	ids := map[uint32]bool{}
	for _, r := range live {
		ids[r.id] = true
	}
	var problems []string
	for _, r := range live {
		d, err := dump(ctx, r.enrp)
		if err != nil {
			return fmt.Sprintf("registrar %d: %v", r.id, err)
		}
		n := 0
		for _, p := range d.Pools {
			for _, pe := range p.PEs {
				n++
				if !ids[pe.Home] {
					problems = append(problems, fmt.Sprintf("registrar %d lists PE %d with home %d (not live)", r.id, pe.ID, pe.Home))
				}
				if h, ok := homes[pe.ID]; ok && h != pe.Home {
					problems = append(problems, fmt.Sprintf("PE %d: homes %d and %d", pe.ID, h, pe.Home))
				}
				homes[pe.ID] = pe.Home
			}
		}
		if n != want {
			problems = append(problems, fmt.Sprintf("registrar %d lists %d PEs, want %d", r.id, n, want))
		}
	}
	if len(problems) > 3 {
		problems = append(problems[:3], fmt.Sprintf("and %d more", len(problems)-3))
	}
	return strings.Join(problems, "; ")
}
