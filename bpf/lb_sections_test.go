package bpf_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/rspxdp/rspxdp/bpf"
	"github.com/rspxdp/rspxdp/internal/benchtable"
	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/loader/loadertest"
)

// section is one STAGE() boundary of lb.c.
type section struct {
	stage uint32 // lb_stage of the LbStages build; 0: the balancer itself
	name  string
}

// sections are the boundaries of lb.c's STAGE() marks, in program order:
// section i costs boundary i minus boundary i-1 (boundary 0 is the
// harness floor, the last one the whole program).
var sections = []section{
	{1, "parse Ethernet, IP, L4 ports"},
	{2, "service lookup"},
	{3, "flow table lookup, PE check: the backend"},
	{4, "MTU check, encapsulation, egress choice"},
	{0, "counters (the whole program)"},
}

// stagedProgram loads the LbStages build of lb.c, returning at boundary
// stage, over the maps a loader pinned in pinDir.
func stagedProgram(tb testing.TB, pinDir string, stage uint32) *ebpf.Program {
	tb.Helper()
	spec, err := bpf.LoadLbStages()
	if err != nil {
		tb.Fatal(err)
	}
	if err := spec.Variables[bpf.LbStagesVarLbStage].Set(stage); err != nil {
		tb.Fatal(err)
	}
	repl := map[string]*ebpf.Map{}
	for name := range spec.Maps {
		if name == ".rodata" {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, name), nil)
		if err != nil {
			tb.Fatalf("pinned map %s: %v", name, err)
		}
		tb.Cleanup(func() { m.Close() })
		// The loader sized some maps at Open: take the pinned ones' sizes.
		spec.Maps[name].MaxEntries = m.MaxEntries()
		spec.Maps[name].Flags = m.Flags()
		repl[name] = m
	}
	var objs bpf.LbStagesObjects
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: repl}); err != nil {
		tb.Fatalf("load lb stages at %d: %v", stage, err)
	}
	tb.Cleanup(func() { objs.Close() })
	return objs.LbXdp
}

// BenchmarkLbSections shows where a packet's time goes: per path, the
// harness runs the balancer cut short at each section boundary (the LbStages
// build, whose early returns the verifier resolves at load time), all
// interleaved in one pinned-CPU run with the floor, and reports each
// section's cost as the difference of consecutive boundaries' medians
// above the floor. Sections of a few ns are within the noise, and the
// compiler may move work across a boundary (what only later code needs is
// computed later in a cut-short build); their sum is the path's figure.
// The reference rows are the in-program floors of BenchmarkLb (lb_ref_*),
// in tables of the path's size, from the same run. With RSPXDP_BENCH_OUT
// set, the rows also go to `make bench`'s table.
//
//	go test -run '^$' -bench BenchmarkLbSections -benchtime 11x ./bpf/
func BenchmarkLbSections(b *testing.B) {
	pinCPU(b)
	frames := readBenchFrames(b)
	const repeat = 20000
	off := uint32(loader.NoFloodLimit)
	var rows []benchtable.Row
	hitSecs := []section{sections[0], sections[1], {6, "connection table lookup"},
		{3, "PE check: the backend"}, sections[3], sections[4]}
	for _, p := range []struct {
		name, frame string
		flood       uint32
		mutate      uint32
		size        uint32 // connection table size
		prime       bool   // run the frame once first: its flow is in the table
		fill        bool   // fill the table first: every new flow evicts one
		engage      bool   // engage the flood guard before each round
		secs        []section
	}{
		{"v4 established -> IPIP", "v4_tcp_ack", off, 0, 1 << 16, true, false, false, hitSecs},
		{"v6 established -> IPv6-in-IPv6", "v6_tcp_ack", off, 0, 1 << 16, true, false, false, hitSecs},
		{"v4 new source every packet", "v4_tcp_ack", off, srcOff4, equalCapacity, false, true, false,
			[]section{sections[0], sections[1], {6, "connection table lookup (a miss)"},
				{5, "Maglev ring: the backend"}, {3, "LRU insert into the full table (evicts)"},
				sections[3], sections[4]}},
		{"v4 SYN flood, guard engaged", "v4_tcp_syn", 0, srcOff4, 1 << 16, false, false, true,
			[]section{sections[0], sections[1], {5, "Maglev ring: the backend"},
				{3, "flood guard"}, sections[3], sections[4]}},
		{"v4 non-VIP pass", "v4_udp_nonvip", off, 0, 1 << 16, false, false, false,
			[]section{sections[0], sections[1], {0, "control-port filter (the whole program)"}}},
	} {
		b.Run(p.name, func(b *testing.B) {
			pinCPU(b)
			frame := frames[p.frame]
			dir := loadertest.PinDir(b)
			l := benchEnvAt(b, dir, 3, loader.DefaultConnTable, p.size, p.flood)
			b.Cleanup(func() { l.Close(false) })
			base := newHarness(b, nil, 1024, loader.DefaultConnTable)
			base.setFrame(b, frame, p.mutate, 0)
			hs := make([]*harness, len(p.secs))
			for i, s := range p.secs {
				prog := l.Program()
				if s.stage != 0 {
					prog = stagedProgram(b, dir, s.stage)
				}
				hs[i] = newHarness(b, prog, 1024, loader.DefaultConnTable)
			}
			full := hs[len(hs)-1]
			if p.prime {
				full.setFrame(b, frame, 0, 0)
				full.run(b, frame, 1)
			}
			if p.fill {
				full.fill(b, frame, p.mutate, int(p.size))
			}
			for i, h := range hs {
				h.setFrame(b, frame, p.mutate, 0)
				// Disjoint sources per program, none of them filled in.
				h.setCounter(b, uint32(i+1)<<24)
			}
			// The references, in tables of the same size: a hit (the
			// reference frame's flow put in first) and, for a path of
			// new flows, an insert into the filled table. Each has its
			// own floor: a mutating frame costs the harness one store.
			ack := frames["v4_tcp_ack"]
			refBase := newHarness(b, nil, 1024, loader.DefaultConnTable)
			refBase.setFrame(b, ack, 0, 0)
			ref := newHarness(b, nil, p.size, loader.DefaultConnTable)
			ref.setFrame(b, ack, 0, 0)
			ref.setTarget(b, ref.objs.LbRefInsert)
			ref.run(b, ack, 1)
			ref.setTarget(b, ref.objs.LbRefEncap)
			// The lookup alone, in the same table.
			refLook := newHarness(b, ref.objs.LbRefLookup, p.size, loader.DefaultConnTable)
			refLook.setFrame(b, ack, 0, 0)
			var refIns *harness
			if p.fill {
				refIns = newHarness(b, nil, p.size, loader.DefaultConnTable)
				refIns.setTarget(b, refIns.objs.LbRefInsert)
				refIns.fill(b, frame, p.mutate, int(p.size))
				refIns.setCounter(b, 1<<30)
			}

			at := make([][]float64, len(p.secs))
			var refs, lookRefs, insRefs []float64
			for b.Loop() {
				if p.engage {
					b.StopTimer()
					full.setFrame(b, frame, 0, 0)
					full.fill(b, frame, 0, loader.DefaultFloodLimit+5000)
					full.setFrame(b, frame, p.mutate, 0)
					b.StartTimer()
				}
				_, fl := base.run(b, frame, repeat)
				for i, h := range hs {
					_, t := h.run(b, frame, repeat)
					at[i] = append(at[i], t-fl)
				}
				_, rfl := refBase.run(b, ack, repeat)
				_, t := ref.run(b, ack, repeat)
				refs = append(refs, t-rfl)
				_, t = refLook.run(b, ack, repeat)
				lookRefs = append(lookRefs, t-rfl)
				if refIns != nil {
					_, t := refIns.run(b, frame, repeat)
					insRefs = append(insRefs, t-fl)
				}
			}
			med := func(v []float64) float64 {
				slices.Sort(v)
				return v[len(v)/2]
			}
			const title = "XDP cost per section of lb.c, ns above the floor (difference of consecutive cut-short runs, one pinned CPU, median of rounds)"
			prev := 0.0
			for i, s := range p.secs {
				m := med(at[i])
				b.ReportMetric(m-prev, fmt.Sprintf("s%d-ns", i+1))
				rows = append(rows, benchtable.Row{
					Section: title, Path: p.name, Workload: s.name, Value: m - prev, Unit: "ns",
					Note: fmt.Sprintf("cumulative %.0f ns", m),
				})
				prev = m
			}
			r := med(refs)
			b.ReportMetric(r, "ref-encap-ns")
			rows = append(rows, benchtable.Row{
				Section: title, Path: p.name, Workload: "ref: bare lookup + IPIP, same run", Value: r, Unit: "ns",
				Note: fmt.Sprintf("reference, not a balancer; %d-flow table", p.size),
			})
			r = med(lookRefs)
			b.ReportMetric(r, "ref-lookup-ns")
			rows = append(rows, benchtable.Row{
				Section: title, Path: p.name, Workload: "ref: bare lookup, same run", Value: r, Unit: "ns",
				Note: fmt.Sprintf("reference, not a balancer; %d-flow table", p.size),
			})
			if refIns != nil {
				r := med(insRefs)
				b.ReportMetric(r, "ref-insert-ns")
				rows = append(rows, benchtable.Row{
					Section: title, Path: p.name, Workload: "ref: bare LRU insert, full table, same run", Value: r, Unit: "ns",
					Note: fmt.Sprintf("reference, not a balancer; %d-flow table", p.size),
				})
			}
		})
	}
	if err := benchtable.Print(os.Stdout, rows); err != nil {
		b.Fatal(err)
	}
	if err := benchtable.Append("12-sections.jsonl", rows); err != nil {
		b.Fatal(err)
	}
}
