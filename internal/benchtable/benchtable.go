// Package benchtable collects the rows of `make bench` from the benchmarks
// and tests that measure them (bpf's BenchmarkLb, e2e's TestPPS) and prints
// them as one table: a figure, its floor, Katran's reference and the ratio.
//
// Each measuring program appends its rows as JSON lines to a file in the
// directory named by the RSPXDP_BENCH_OUT environment variable; the
// benchtable command reads them all back and prints the table.
package benchtable

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
)

// EnvDir names the environment variable holding the rows' directory.
const EnvDir = "RSPXDP_BENCH_OUT"

// Row is one measured figure.
type Row struct {
	// Section groups rows: "XDP ns/packet above floor", "packets/s".
	Section string `json:"section"`
	// Path is what was measured ("v4 established -> IPIP").
	Path string `json:"path"`
	// Workload says how: frames, table state, guard.
	Workload string `json:"workload"`
	// Value is the figure: ns above the floor, or packets/s.
	Value float64 `json:"value"`
	// Unit of Value ("ns", "pps").
	Unit string `json:"unit"`
	// Floor is the test-run floor measured next to Value (ns), 0 if none.
	Floor float64 `json:"floor,omitempty"`
	// Katran is Katran's figure for the same path and accounting, 0 if
	// there is none.
	Katran float64 `json:"katran,omitempty"`
	// Goal is the target ratio Value/Katran, 0 if none.
	Goal float64 `json:"goal,omitempty"`
	// Note is free text (a comparison, a reference).
	Note string `json:"note,omitempty"`
}

// Ratio is Value/Katran, 0 without a reference.
func (r Row) Ratio() float64 {
	if r.Katran == 0 {
		return 0
	}
	return r.Value / r.Katran
}

// Append adds rows to file name in the directory of EnvDir; without EnvDir
// it does nothing.
func Append(name string, rows []Row) error {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench rows: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("bench rows: %w", err)
	}
	enc := json.NewEncoder(f)
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			f.Close()
			return fmt.Errorf("bench rows: %w", err)
		}
	}
	return f.Close()
}

// Read reads every *.jsonl file of dir, in name order.
func Read(dir string) ([]Row, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("bench rows: %w", err)
	}
	slices.Sort(names)
	var rows []Row
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			return nil, fmt.Errorf("bench rows: %w", err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r Row
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				f.Close()
				return nil, fmt.Errorf("bench rows %s: %w", n, err)
			}
			rows = append(rows, r)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("bench rows %s: %w", n, err)
		}
	}
	if len(rows) == 0 {
		return nil, errors.New("bench rows: none found in " + dir)
	}
	return rows, nil
}

// Print writes rows as one table, sections in the order they first appear.
func Print(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "path\tworkload\tfigure\tfloor\tKatran\tratio\tgoal\tnote")
	var sections []string
	for _, r := range rows {
		if !slices.Contains(sections, r.Section) {
			sections = append(sections, r.Section)
		}
	}
	for _, s := range sections {
		fmt.Fprintf(tw, "-- %s\n", s)
		for _, r := range rows {
			if r.Section != s {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Path, r.Workload, num(r.Value, r.Unit),
				num(r.Floor, "ns"), num(r.Katran, r.Unit), ratio(r.Ratio()), goal(r.Goal, r.Ratio()), r.Note)
		}
	}
	return tw.Flush()
}

func num(v float64, unit string) string {
	switch {
	case v == 0:
		return "-"
	case unit == "pps":
		return fmt.Sprintf("%.2f M/s", v/1e6)
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}

func ratio(r float64) string {
	if r == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", r)
}

func goal(g, r float64) string {
	switch {
	case g == 0:
		return "-"
	case r <= g:
		return fmt.Sprintf("<= %.1f met", g)
	}
	return fmt.Sprintf("<= %.1f missed", g)
}
