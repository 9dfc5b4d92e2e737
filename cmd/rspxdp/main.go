// Command rspxdp is the one binary of rspxdp: registrar, XDP node, pool
// element and pool user tools, and the operator's decoders, as subcommands.
//
// Each subcommand lives in its own file and is listed once in commands().
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand. run gets the arguments after the subcommand's
// name and returns a usageError for mistakes the user should fix by reading
// --help, any other error for failures at run time.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *cliEnv, args []string) error
}

// cliEnv carries what a subcommand may touch of the outside world, so tests
// can run subcommands in-process with their own writers.
type cliEnv struct {
	stdout io.Writer
	stderr io.Writer
}

// usageError marks an error caused by how the command was called: it is
// printed without any stack or wrapping noise and exits with status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

func commands() []command {
	cmds := []command{
		// Subcommands, one line each; keep sorted by name.
		{name: "certs", summary: "make a test CA and TLS certificates for registrars, PEs and PUs", run: runCerts},
		{name: "decode", summary: "print the ASAP/ENRP messages in a pcap", run: runDecode},
		{name: "demo", summary: "self-contained demo: node, 3 PEs and a client in namespaces (root)", run: runDemo},
		{name: "node", summary: "run a registrar that drives the XDP data plane (the product)", run: runNode},
		{name: "pe", summary: "run a pool element: serve echo/discard/daytime/chargen and register it", run: runPE},
		{name: "pu", summary: "act as a pool user: resolve a pool, or run an echo session with failover", run: runPU},
		{name: "registrar", summary: "run an RSerPool registrar (ASAP server, ENRP peer)", run: runRegistrar},
		{name: "status", summary: "dump a registrar's handlespace: pools, PEs, owners, policies, checksums", run: runStatus},
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	return cmds
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &cliEnv{stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

// run dispatches to a subcommand and maps its outcome to an exit status:
// 0 success, 1 failure at run time, 2 bad usage.
func run(ctx context.Context, env *cliEnv, args []string) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(env.stdout, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range cmds {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, env, args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, new(usageError)):
			fmt.Fprintf(env.stderr, "rspxdp %s: %v\nRun 'rspxdp %s --help' for usage.\n", c.name, err, c.name)
			return 2
		default:
			fmt.Fprintf(env.stderr, "rspxdp %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(env.stderr, "rspxdp: unknown command %q\n\n", args[0])
	printUsage(env.stderr, cmds)
	return 2
}

func printUsage(w io.Writer, cmds []command) {
	fmt.Fprintln(w, "rspxdp — Reliable Server Pooling (RFC 5351-5356) with an XDP data plane")
	fmt.Fprintln(w, "\nUsage: rspxdp COMMAND [flags]\n\nCommands:")
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'rspxdp COMMAND --help' for a command's flags and examples.")
}

// newFlagSet returns a FlagSet that reports errors instead of exiting, and
// prints usage (with examples) to the command's stdout on --help.
func newFlagSet(env *cliEnv, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stdout, "%s\n\nFlags:\n", usage)
		fs.SetOutput(env.stdout)
		fs.PrintDefaults()
		fs.SetOutput(env.stderr)
	}
	return fs
}

// parseFlags parses args, turning flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}
