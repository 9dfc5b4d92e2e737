package bpf_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rspxdp/rspxdp/internal/testenv"
)

// generateLines returns the bpf2go command lines of gen_lb.go, so the test
// rebuilds with exactly the flags `make generate` uses.
func generateLines(t *testing.T) [][]string {
	t.Helper()
	src, err := os.ReadFile("gen_lb.go")
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, line := range strings.Split(string(src), "\n") {
		rest, ok := strings.CutPrefix(line, "//go:generate go tool bpf2go ")
		if !ok {
			continue
		}
		out = append(out, splitQuoted(t, rest))
	}
	if len(out) == 0 {
		t.Fatal("no bpf2go lines in gen_lb.go")
	}
	return out
}

// splitQuoted splits on spaces outside double quotes, as go generate does.
func splitQuoted(t *testing.T, s string) []string {
	var args []string
	var cur strings.Builder
	inQ, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQ = !inQ
			have = true
		case r == ' ' && !inQ:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if inQ {
		t.Fatalf("unbalanced quotes in %q", s)
	}
	if have {
		args = append(args, cur.String())
	}
	return args
}

// generateInto runs every bpf2go line with its output in dir.
func generateInto(t *testing.T, dir string) {
	t.Helper()
	for _, args := range generateLines(t) {
		cmd := exec.Command("go", append([]string{"tool", "bpf2go", "-output-dir", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GOPACKAGE=bpf")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("bpf2go %v: %v\n%s", args, err, out)
		}
	}
}

var generated = []string{"lb_bpfel.o", "lb_bpfel.go", "lb_bench_bpfel.o", "lb_bench_bpfel.go"}

// TestLbObjectsUpToDate rebuilds the BPF objects and bindings from the C
// sources with the committed flags and fails if anything differs from the
// committed files: CI proves the objects are the sources. It also builds
// twice to prove the build is reproducible.
func TestLbObjectsUpToDate(t *testing.T) {
	testenv.RequireCommand(t, "clang", "clang")
	testenv.RequireCommand(t, "llvm-strip", "llvm")
	a, b := t.TempDir(), t.TempDir()
	generateInto(t, a)
	generateInto(t, b)
	for _, name := range generated {
		fa, err := os.ReadFile(filepath.Join(a, name))
		if err != nil {
			t.Fatal(err)
		}
		fb, err := os.ReadFile(filepath.Join(b, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fa, fb) {
			t.Errorf("%s: two builds differ (%d vs %d bytes): the build is not reproducible", name, len(fa), len(fb))
		}
		committed, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(committed, fa) {
			t.Errorf("%s: committed file differs from a fresh build of the C sources: run `make generate` and commit", name)
		}
	}
}
