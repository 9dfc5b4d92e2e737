// Command benchtable prints the rows that `make bench`'s benchmarks wrote
// to a directory as one table.
//
//	benchtable DIR
package main

import (
	"fmt"
	"os"

	"github.com/rspxdp/rspxdp/internal/benchtable"
)

func main() {
	if len(os.Args) != 2 || os.Args[1] == "-h" || os.Args[1] == "--help" {
		fmt.Fprintln(os.Stderr, "usage: benchtable DIR\n\nPrints the bench rows (*.jsonl) that `make bench` collected in DIR as one table.")
		os.Exit(2)
	}
	rows, err := benchtable.Read(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	if err := benchtable.Print(os.Stdout, rows); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}
