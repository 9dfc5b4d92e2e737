package main

import (
	"context"
	"fmt"

	"github.com/rspxdp/rspxdp/internal/telemetry"
)

const versionUsage = `Usage: rspxdp version   (or: rspxdp --version)

Prints the version, the commit and the Go version this binary was built
from: the values 'make build' links in (git describe, git rev-parse), else
what the Go toolchain recorded. The same values label rspxdp_build_info on
every daemon's /metrics.`

func runVersion(_ context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "version", versionUsage)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	fmt.Fprintln(env.stdout, telemetry.Build())
	return nil
}
