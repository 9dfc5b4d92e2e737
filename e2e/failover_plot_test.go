package e2e

import (
	"fmt"
	"image/color"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/rspxdp/rspxdp/internal/benchtable"
	"github.com/rspxdp/rspxdp/loader"
)

// TestFailoverPlot sends many short UDP flows through the XDP load balancer
// and samples the packets each PE receives (its decapsulation counter) every
// 100 ms while PE 2 is drained (it keeps its flows, takes no new ones, so
// its share fades as its flows end) and PE 3 is killed and marked down (its
// flows move at once). It draws the per-PE packet rates over time as a PNG
// (gonum/plot), so a person sees the failover: failover.png in
// RSPXDP_BENCH_OUT, which also turns the test on (`make bench`).
func TestFailoverPlot(t *testing.T) {
	dir := os.Getenv(benchtable.EnvDir)
	if dir == "" {
		t.Skip("failover plot: set " + benchtable.EnvDir + " to a directory to run it")
	}
	tp := newTopo(t)
	h := tp.openLB(t)

	const (
		step     = 100 * time.Millisecond
		drainAt  = 2 * time.Second
		killAt   = 4 * time.Second
		end      = 6 * time.Second
		nflows   = 48
		churn    = 4 // flows replaced every step: a flow lives about 1.2 s
		perFlowP = 5 * time.Millisecond
	)
	var flows []net.Conn
	open := func() {
		uc, err := dialUDP(tp.client, vipV4)
		if err != nil {
			t.Fatal(err)
		}
		flows = append(flows, uc.c)
	}
	for range nflows {
		open()
	}
	defer func() {
		for _, c := range flows {
			c.Close()
		}
	}()
	counts := func() [numPEs]uint64 {
		var c [numPEs]uint64
		for i, p := range tp.pes {
			s, err := p.decap.Stats()
			if err != nil {
				t.Fatal(err)
			}
			c[i] = s.DecapV4
		}
		return c
	}

	events := make(chan error, 2)
	setStates := func(states map[int]loader.State) error {
		for _, k := range services() {
			var bes []loader.Backend
			for i := 1; i <= numPEs; i++ {
				st, ok := states[i]
				if !ok {
					st = loader.Active
				}
				bes = append(bes, loader.Backend{ID: uint32(i), Addr: peAddr(i, k.VIP.Addr().Is6()), Weight: 1, State: st})
			}
			if err := h.ns.Do(func() error { return h.l.SetBackends(k, bes) }); err != nil {
				return fmt.Errorf("set backends of %s: %w", k, err)
			}
		}
		return nil
	}
	series := make([]plotter.XYs, numPEs)
	prev := counts()
	start := time.Now()
	nextStep := start.Add(step)
	drained, killed := false, false
	tick := time.NewTicker(perFlowP)
	defer tick.Stop()
	for now := range tick.C {
		el := now.Sub(start)
		if el >= end {
			break
		}
		for _, c := range flows {
			c.Write([]byte("?"))
		}
		// The control plane acts beside the senders, as a node's does:
		// reprogramming the rings takes a while, and the flows go on.
		if !drained && el >= drainAt {
			drained = true
			go func() { events <- setStates(map[int]loader.State{2: loader.Draining}) }()
		}
		if !killed && el >= killAt {
			killed = true
			tp.pes[2].srv.kill()
			go func() { events <- setStates(map[int]loader.State{2: loader.Draining, 3: loader.Down}) }()
		}
		if now.Before(nextStep) {
			continue
		}
		nextStep = nextStep.Add(step)
		cur := counts()
		for i := range cur {
			series[i] = append(series[i], plotter.XY{X: el.Seconds(), Y: float64(cur[i] - prev[i])})
		}
		prev = cur
		// Churn: the oldest flows end, new ones start.
		for _, c := range flows[:churn] {
			c.Close()
		}
		flows = flows[churn:]
		for range churn {
			open()
		}
	}

	for range 2 {
		if err := <-events; err != nil {
			t.Fatal(err)
		}
	}
	// What the plot must show: the killed PE gets nothing once it is down,
	// the drained one less than before, and the flows still flow.
	sum := func(xy plotter.XYs, from, to time.Duration) float64 {
		var s float64
		for _, p := range xy {
			if p.X > from.Seconds() && p.X <= to.Seconds() {
				s += p.Y
			}
		}
		return s
	}
	last := end - time.Second
	if got := sum(series[2], last, end); got != 0 {
		t.Errorf("PE 3 received %.0f packets in the last second, a second after it was marked down", got)
	}
	if before, after := sum(series[1], 0, drainAt), sum(series[1], last, end); after >= before/2 {
		t.Errorf("drained PE 2: %.0f packets in the last second, %.0f in the 2 s before the drain", after, before)
	}
	total := sum(series[0], last, end) + sum(series[1], last, end)
	if total == 0 {
		t.Errorf("no packets reached the surviving PEs in the last second")
	}

	p := plot.New()
	p.Title.Text = fmt.Sprintf("rspxdp failover: %d UDP flows (each 200 pkt/s, ~1.2 s lifetime), packets per PE per 100 ms", nflows)
	p.X.Label.Text = "time (s)"
	p.Y.Label.Text = "packets / 100 ms"
	colors := []color.RGBA{{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, {R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, {R: 0xd6, G: 0x27, B: 0x28, A: 0xff}}
	for i, xy := range series {
		l, err := plotter.NewLine(xy)
		if err != nil {
			t.Fatal(err)
		}
		l.Color = colors[i]
		l.Width = vg.Points(2)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("PE %d", i+1), l)
	}
	ymax := 0.0
	for _, xy := range series {
		for _, pt := range xy {
			ymax = max(ymax, pt.Y)
		}
	}
	for _, ev := range []struct {
		at   time.Duration
		name string
	}{{drainAt, "PE 2 drained"}, {killAt, "PE 3 killed, marked down"}} {
		l, err := plotter.NewLine(plotter.XYs{{X: ev.at.Seconds(), Y: 0}, {X: ev.at.Seconds(), Y: ymax * 1.05}})
		if err != nil {
			t.Fatal(err)
		}
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		l.Color = color.Gray{Y: 0x60}
		p.Add(l)
		lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: ev.at.Seconds() + 0.05, Y: ymax * 1.02}}, Labels: []string{ev.name}})
		if err != nil {
			t.Fatal(err)
		}
		p.Add(lbl)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(8)
	p.Y.Min = 0
	p.Y.Max = ymax * 1.1
	out := filepath.Join(dir, "failover.png")
	if err := p.Save(24*vg.Centimeter, 12*vg.Centimeter, out); err != nil {
		t.Fatalf("save plot: %v", err)
	}
	t.Logf("failover plot: %s", out)
}
