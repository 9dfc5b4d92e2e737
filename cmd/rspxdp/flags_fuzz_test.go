package main

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzRegistrarFlags checks the parsers of the registrar's repeatable list
// flags (--allow-handle, --allow-net, --peer) and of --id: no panic, list
// items are trimmed, non-empty and comma-free, a list printed by String
// reads back the same, and an accepted id is non-zero and prints back.
func FuzzRegistrarFlags(f *testing.F) {
	for _, s := range []string{
		"echo", "echo, dns", "10.0.0.0/8,fc00::/7", " , ,", "a,,b", "\t\n", "1", "0x10", "0", "4294967296", "-1", "0b1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var l listFlag
		if err := l.Set(in); err != nil {
			t.Fatalf("Set(%q): %v", in, err)
		}
		for _, it := range l {
			if it == "" || it != strings.TrimSpace(it) || strings.Contains(it, ",") {
				t.Fatalf("Set(%q) gave item %q", in, it)
			}
		}
		var back listFlag
		if err := back.Set(l.String()); err != nil || !slices.Equal(back, l) {
			t.Fatalf("Set(%q) = %q, printed %q, read back %q (%v)", in, l, l.String(), back, err)
		}
		if in == "" {
			return
		}
		id, err := parseServerID(in)
		if err != nil {
			return
		}
		if id == 0 {
			t.Fatalf("parseServerID(%q) accepted 0", in)
		}
		if again, err := parseServerID(strconv.FormatUint(uint64(id), 10)); err != nil || again != id {
			t.Fatalf("parseServerID(%q) = %d, which reads back as %d, %v", in, id, again, err)
		}
	})
}
