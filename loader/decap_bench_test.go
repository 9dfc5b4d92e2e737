package loader_test

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket/layers"

	"github.com/rspxdp/rspxdp/bpf"
)

// decapHarness is the frame-restoring harness of bpf/lb_bench.c with a
// program in its tail-call slot: the decapsulation program shortens the
// frame, so with repeat > 1 every run after the first would otherwise see
// an already decapsulated packet and just pass it.
func decapHarness(b *testing.B, target *ebpf.Program, frame []byte) *bpf.LbBenchObjects {
	b.Helper()
	var objs bpf.LbBenchObjects
	if err := bpf.LoadLbBenchObjects(&objs, nil); err != nil {
		b.Fatalf("load bench harness: %v", err)
	}
	b.Cleanup(func() { objs.Close() })
	if target == nil {
		target = objs.LbBenchTrivial
	}
	if err := objs.LbBenchJmp.Update(uint32(0), target, ebpf.UpdateAny); err != nil {
		b.Fatalf("install program under test: %v", err)
	}
	var fr bpf.LbBenchBenchFrame
	if len(frame) > len(fr.Data) {
		b.Fatalf("frame of %d bytes too long for the harness", len(frame))
	}
	fr.Len = uint32(len(frame))
	copy(fr.Data[:], frame)
	if err := objs.LbBenchFrame.Update(uint32(0), &fr, ebpf.UpdateAny); err != nil {
		b.Fatalf("store bench frame: %v", err)
	}
	return &objs
}

// BenchmarkDecap measures the decapsulation program per packet through the
// harness and reports ns/pkt with the harness's own cost (measured with a
// trivial program in the slot, on the same frame) subtracted.
//
//	go test -run '^$' -bench Decap -count 5 ./loader
func BenchmarkDecap(b *testing.B) {
	d := openDecap(b)
	tcp4 := innerTCP4(b)
	udp6 := innerUDP6(b)
	for _, tc := range []struct {
		name  string
		frame []byte
		strip int // bytes the program must remove
	}{
		{"v4-in-v4", outer4(b, decapPE4, layers.IPProtocolIPv4, tcp4), 20},
		{"v6-in-v6", outer6(b, decapPE6, layers.IPProtocolIPv6, udp6), 40},
		{"plain-pass", eth(b, layers.EthernetTypeIPv4, tcp4), 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			base := decapHarness(b, nil, tc.frame)
			h := decapHarness(b, d.Program(), tc.frame)
			// One checked run first: the benchmark must time the
			// path it is named after.
			out := make([]byte, len(tc.frame)+64)
			opts := &ebpf.RunOptions{Data: tc.frame, DataOut: out}
			rc, err := h.LbBench.Run(opts)
			if err != nil {
				b.Fatal(err)
			}
			if rc != decapXDPPass || len(opts.DataOut) != len(tc.frame)-tc.strip {
				b.Fatalf("verdict %d, %d bytes out; want XDP_PASS, %d bytes", rc, len(opts.DataOut), len(tc.frame)-tc.strip)
			}
			_, per, err := h.LbBench.Benchmark(tc.frame, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			_, basePer, err := base.LbBench.Benchmark(tc.frame, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(per.Nanoseconds())-float64(basePer.Nanoseconds()), "ns/pkt")
			b.ReportMetric(float64(basePer.Nanoseconds()), "harness-ns/pkt")
		})
	}
}
