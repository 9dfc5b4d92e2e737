package benchtable

import (
	"bytes"
	"strings"
	"testing"
)

// TestAppendReadPrint: rows written by two programs come back in file order
// and print as one table with ratios and goal verdicts.
func TestAppendReadPrint(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvDir, dir)
	if err := Append("20-b.jsonl", []Row{{Section: "pps", Path: "xdp", Value: 2.5e6, Unit: "pps"}}); err != nil {
		t.Fatal(err)
	}
	if err := Append("10-a.jsonl", []Row{
		{Section: "ns", Path: "hit", Value: 60, Unit: "ns", Floor: 30, Katran: 120, Goal: 0.6},
		{Section: "ns", Path: "insert", Value: 300, Unit: "ns", Floor: 30, Katran: 320, Goal: 0.8},
	}); err != nil {
		t.Fatal(err)
	}
	rows, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0].Path != "hit" || rows[2].Path != "xdp" {
		t.Fatalf("rows %+v, want hit, insert, xdp", rows)
	}
	var b bytes.Buffer
	if err := Print(&b, rows); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"-- ns", "-- pps", "0.50", "<= 0.6 met", "0.94", "<= 0.8 missed", "2.50 M/s", "30 ns"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if _, err := Read(t.TempDir()); err == nil {
		t.Errorf("Read of an empty directory succeeded")
	}
}
