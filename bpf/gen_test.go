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

// TestObjectsUpToDate rebuilds every BPF program from its C source, twice,
// with the bpf2go lines that `make generate` runs, and fails if the two
// builds differ (the build must be reproducible) or differ from the
// committed objects and bindings: CI proves the committed programs are
// their sources.
func TestObjectsUpToDate(t *testing.T) {
	testenv.RequireCommand(t, "clang", "clang")
	testenv.RequireCommand(t, "llvm-strip", "llvm")
	for _, tc := range []struct {
		genFile   string
		generated []string
	}{
		{"gen_lb.go", []string{"lb_bpfel.o", "lb_bpfel.go", "lb_bench_bpfel.o", "lb_bench_bpfel.go", "lb_stages_bpfel.o", "lb_stages_bpfel.go"}},
		{"gen_decap.go", []string{"decap_bpfel.o", "decap_bpfel.go"}},
	} {
		t.Run(tc.genFile, func(t *testing.T) {
			a, b := t.TempDir(), t.TempDir()
			generateInto(t, tc.genFile, a)
			generateInto(t, tc.genFile, b)
			for _, name := range tc.generated {
				fa := readFile(t, filepath.Join(a, name))
				if !bytes.Equal(fa, readFile(t, filepath.Join(b, name))) {
					t.Errorf("%s: two builds differ: the build is not reproducible", name)
				}
				if !bytes.Equal(readFile(t, name), fa) {
					t.Errorf("%s: committed file differs from a fresh build of the C sources: run `make generate` and commit", name)
				}
			}
		})
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// generateInto runs every bpf2go line of genFile with its output in dir.
func generateInto(t *testing.T, genFile, dir string) {
	t.Helper()
	n := 0
	for _, line := range strings.Split(string(readFile(t, genFile)), "\n") {
		rest, ok := strings.CutPrefix(line, "//go:generate go tool bpf2go ")
		if !ok {
			continue
		}
		n++
		args := splitQuoted(t, rest)
		cmd := exec.Command("go", append([]string{"tool", "bpf2go", "-output-dir", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GOPACKAGE=bpf")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("bpf2go %v: %v\n%s", args, err, out)
		}
	}
	if n == 0 {
		t.Fatalf("no bpf2go lines in %s", genFile)
	}
}

// splitQuoted splits on spaces outside double quotes, as go generate does.
func splitQuoted(t *testing.T, s string) []string {
	var args []string
	var cur strings.Builder
	inQ, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQ, have = !inQ, true
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
