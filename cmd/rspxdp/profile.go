package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
)

// startCPUProfile writes a Go CPU profile (runtime/pprof, read with `go
// tool pprof FILE`) to path until the returned stop is called. It is how
// the registrar's SCTP path was profiled in the test VM (issue 15), where
// no debugger or perf runs.
func startCPUProfile(path string, log *slog.Logger) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpu-profile %s: %w", path, err)
	}
	log.Info("writing a CPU profile until exit", "file", path)
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Warn("CPU profile not written", "file", path, "err", err)
			return
		}
		log.Info("CPU profile written", "file", path)
	}, nil
}

// addCPUProfileFlag defines --cpu-profile, which registrar and node share.
func addCPUProfileFlag(fs *flag.FlagSet) *string {
	return fs.String("cpu-profile", "", "write a Go CPU profile of the whole run to this file, to read with go tool pprof (performance work; empty: off)")
}

// cpuProfileFor starts the profile --cpu-profile asks for; stop is a no-op
// without one.
func cpuProfileFor(path string, log *slog.Logger) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	return startCPUProfile(path, log)
}
