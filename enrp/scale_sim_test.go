package enrp

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/msg/msgtest"
)

// scalePE is PE id with addresses unique up to 2^24 PEs (testPE's wrap
// past 65,536) and a lifetime longer than any simulated run.
func scalePE(id uint32) PoolElement {
	pe := msgtest.PE(id)
	pe.Transport.Addrs = []netip.Addr{netip.AddrFrom4([4]byte{10, byte(id >> 16), byte(id >> 8), byte(id)})}
	pe.ASAP = netip.AddrPortFrom(netip.AddrFrom4([4]byte{11, byte(id >> 16), byte(id >> 8), byte(id)}), 5000)
	pe.Lifetime = 24 * time.Hour
	return pe
}

// scaleConfig is a registrar of the scale runs: the fast peer timers of the
// other simulations, and PE keep-alives rare enough that a run measures
// ENRP, not PE liveness traffic.
func scaleConfig(id uint32, regs int) Config {
	c := testConfig(id)
	c.KeepAliveInterval = time.Hour
	c.KeepAliveTimeout = time.Hour
	c.MaxPeers = regs
	return c
}

// scaleRow is one line of the table.
type scaleRow struct {
	regs, pes int
	// per registration: messages delivered in all (ASAP + ENRP), ENRP
	// Handle Updates, and CPU of the whole simulated system
	msgsPerReg, updatesPerReg float64
	cpuPerReg                 time.Duration
	// one heartbeat cycle of the audit: Presences in all and per
	// registrar, CPU of the cycle
	presencesPerCycle, presencesPerRegistrar int
	cpuPerCycle                              time.Duration
	// a registrar dies: simulated time until every survivor agrees and
	// none holds a PE of the dead one, messages that took, CPU
	converge      time.Duration
	deathMsgs     int
	takeoverMsgs  int
	cpuConverge   time.Duration
	heapMiB       float64
	registrations int
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// runScale builds regs registrars in a full mesh, registers pes PEs (pools
// of 100) spread round robin over them, runs one audit cycle and kills the last registrar.
func runScale(t testing.TB, regs, pes int) scaleRow {
	s := newSim(t)
	for i := 1; i <= regs; i++ {
		s.addReg(scaleConfig(uint32(i), regs))
	}
	s.advance(200 * time.Millisecond) // the mesh settles
	row := scaleRow{regs: regs, pes: pes}
	for k := range s.sent {
		delete(s.sent, k)
	}
	start := cpuTime()
	for i := 0; i < pes; i++ {
		// Pools of 100 PEs, as many services of a site would be.
		s.register(uint32(1+i%regs), fmt.Sprintf("pool-%d", i/100), scalePE(uint32(i+1)))
	}
	d := cpuTime() - start
	row.registrations = pes
	row.msgsPerReg = float64(total(s.sent)) / float64(pes)
	row.updatesPerReg = float64(s.sent["HandleUpdate"]) / float64(pes)
	row.cpuPerReg = d / time.Duration(pes)
	s.agree(t, pes)

	// Audit: one heartbeat cycle; every registrar sends its Presence,
	// with the checksum of its own PEs, to every peer.
	for k := range s.sent {
		delete(s.sent, k)
	}
	start = cpuTime()
	s.advance(testConfig(1).PeerHeartbeatCycle)
	row.cpuPerCycle = cpuTime() - start
	row.presencesPerCycle = s.sent["Presence"]
	row.presencesPerRegistrar = row.presencesPerCycle / regs

	// Death of the last registrar: the survivors detect it, one takes its
	// PEs over, the PEs confirm their new home.
	for k := range s.sent {
		delete(s.sent, k)
	}
	dead := uint32(regs)
	empty := s.regs[1].Checksum(0xdeadbeef)
	s.kill(dead)
	start = cpuTime()
	var simulated time.Duration
	for simulated = 0; simulated < time.Minute; simulated += 10 * time.Millisecond {
		s.advance(10 * time.Millisecond)
		if s.converged(pes, dead, empty) {
			break
		}
	}
	row.cpuConverge = cpuTime() - start
	row.converge = simulated + 10*time.Millisecond
	row.deathMsgs = total(s.sent)
	row.takeoverMsgs = s.sent["InitTakeover"] + s.sent["InitTakeoverAck"] + s.sent["TakeoverServer"]
	if !s.converged(pes, dead, empty) {
		t.Fatalf("%d registrars, %d PEs: no convergence within a simulated minute after registrar %d died", regs, pes, dead)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	row.heapMiB = float64(ms.HeapAlloc) / (1 << 20)
	return row
}

// converged reports whether every survivor holds all PEs, none owned by
// dead, with the same checksum per owner.
func (s *sim) converged(pes int, dead uint32, empty uint16) bool {
	ref := s.regs[s.order[0]]
	for _, id := range s.order {
		c := s.regs[id]
		if c.Count() != pes || c.Checksum(dead) != empty {
			return false
		}
		for _, o := range s.order {
			if c.Checksum(o) != ref.Checksum(o) {
				return false
			}
		}
	}
	return true
}

// TestScaleSimulation prints what ENRP costs as registrars and PEs grow, on
// the in-memory simulator (no sockets; CPU is the process's CPU time for
// the whole simulated system, the sum over all registrars, GC included). The default run is
// 8, 32 and 64 registrars with 1,000 PEs, and checks the message counts
// stay linear in the registrars; RSPXDP_SCALE_FULL=1 runs 10,000 and
// 100,000 PEs instead (tens of minutes on 2 cores, several GB):
//
//	go test -run TestScaleSimulation -v ./enrp/
//	RSPXDP_SCALE_FULL=1 go test -run TestScaleSimulation -v -timeout 60m ./enrp/
func TestScaleSimulation(t *testing.T) {
	if testing.Short() {
		t.Skip("scale simulation: not in -short")
	}
	sizes := []int{1_000}
	if os.Getenv("RSPXDP_SCALE_FULL") != "" {
		sizes = []int{10_000, 100_000}
	}
	var rows []scaleRow
	for _, pes := range sizes {
		for _, regs := range []int{8, 32, 64} {
			rows = append(rows, runScale(t, regs, pes))
			// Each row printed as it is measured: the full run is long.
			r := rows[len(rows)-1]
			t.Logf("measured %d registrars x %d PEs: %.1f msgs/registration, %v CPU/registration, %d takeover msgs, heap %.0f MiB",
				r.regs, r.pes, r.msgsPerReg, r.cpuPerReg, r.takeoverMsgs, r.heapMiB)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| registrars | PEs | msgs / registration | Handle Updates / registration | CPU / registration (per registrar) | Presences / audit cycle (per registrar) | CPU / audit cycle | converge after a registrar death (simulated) | msgs to converge (takeover msgs) | CPU to converge |\n")
	fmt.Fprintf(&b, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %d | %.2f | %.2f | %v (%v) | %d (%d) | %v | %v | %d (%d) | %v |\n",
			r.regs, r.pes, r.msgsPerReg, r.updatesPerReg, r.cpuPerReg.Round(10*time.Nanosecond), (r.cpuPerReg / time.Duration(r.regs)).Round(10*time.Nanosecond),
			r.presencesPerCycle, r.presencesPerRegistrar, r.cpuPerCycle.Round(time.Microsecond),
			r.converge, r.deathMsgs, r.takeoverMsgs, r.cpuConverge.Round(time.Millisecond))
	}
	t.Log(b.String())
	for _, r := range rows {
		// A change reaches every peer once: N-1 Handle Updates.
		if r.updatesPerReg > float64(r.regs-1)+0.01 {
			t.Errorf("%d registrars: %.2f Handle Updates per registration, want %d", r.regs, r.updatesPerReg, r.regs-1)
		}
		// The audit: one Presence to each peer per heartbeat cycle.
		if r.presencesPerRegistrar != r.regs-1 {
			t.Errorf("%d registrars: %d Presences per registrar and cycle, want %d", r.regs, r.presencesPerRegistrar, r.regs-1)
		}
		// A death: one takeover (Init Takeover, its ack and Takeover
		// Server per survivor), not one per survivor.
		if max := 3 * (r.regs - 1); r.takeoverMsgs > max {
			t.Errorf("%d registrars: %d takeover messages for one death, want at most %d (linear)", r.regs, r.takeoverMsgs, max)
		}
	}
}
