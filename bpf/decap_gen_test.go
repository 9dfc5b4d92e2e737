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

// TestDecapObjectsUpToDate rebuilds decap.c with the go:generate line of
// gen_decap.go and fails if the committed object or bindings differ, so CI
// proves the committed program is its source.
func TestDecapObjectsUpToDate(t *testing.T) {
	testenv.RequireCommand(t, "clang", "clang")
	testenv.RequireCommand(t, "llvm-strip", "llvm")
	src, err := os.ReadFile("gen_decap.go")
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, line := range strings.Split(string(src), "\n") {
		if rest, ok := strings.CutPrefix(line, "//go:generate go tool bpf2go "); ok {
			args = decapSplitArgs(rest)
		}
	}
	if args == nil {
		t.Fatal("no bpf2go line in gen_decap.go")
	}
	dir := t.TempDir()
	cmd := exec.Command("go", append([]string{"tool", "bpf2go", "-output-dir", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GOPACKAGE=bpf")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bpf2go %v: %v\n%s", args, err, out)
	}
	for _, name := range []string{"decap_bpfel.o", "decap_bpfel.go"} {
		fresh, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("%s differs from a fresh build of decap.c: run `make generate` and commit", name)
		}
	}
}

// decapSplitArgs splits a go:generate line on spaces outside double quotes.
func decapSplitArgs(s string) []string {
	var args []string
	var cur strings.Builder
	quoted, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, have = !quoted, true
		case r == ' ' && !quoted:
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
	if have {
		args = append(args, cur.String())
	}
	return args
}
