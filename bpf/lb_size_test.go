package bpf_test

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/rspxdp/rspxdp/bpf"
	"github.com/rspxdp/rspxdp/internal/testenv"
)

// TestLbProgramSize logs what the balancer costs the kernel to verify and
// run: instructions after the kernel's rewrites (map lookups of arrays
// inlined, helpers resolved), the JIT image, and the verifier's processed
// instruction count, which must stay far below its one-million limit.
func TestLbProgramSize(t *testing.T) {
	testenv.RequireRoot(t)
	spec, err := bpf.LoadLb()
	if err != nil {
		t.Fatal(err)
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats},
	})
	if err != nil {
		t.Fatalf("load lb: %v", err)
	}
	defer coll.Close()
	prog := coll.Programs[bpf.LbProgLbXdp]
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	insns, err := info.Instructions()
	if err != nil {
		t.Fatalf("xlated instructions: %v", err)
	}
	jited, _ := info.JitedSize()
	m := regexp.MustCompile(`processed (\d+) insns`).FindStringSubmatch(prog.VerifierLog)
	if m == nil {
		t.Fatalf("no instruction count in the verifier log:\n%s", prog.VerifierLog)
	}
	processed, _ := strconv.Atoi(m[1])
	t.Logf("lb_xdp: %d xlated instructions, %d bytes JITed, verifier processed %d instructions", len(insns), jited, processed)
	if processed > 200_000 {
		t.Errorf("verifier processed %d instructions: a fifth of its limit, the program's paths are multiplying", processed)
	}
}
