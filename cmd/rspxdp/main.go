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
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"sync"
	"sync/atomic"
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
	stdin  io.Reader // nil: os.Stdin, read for the argument "-"

	// Set by newFlagSet and the shared flags.
	logLevel, logFormat string
	log                 *slog.Logger
	level               *slog.LevelVar

	mu      sync.Mutex
	reloads []reloadable

	// onFlagSet, when set, sees every FlagSet newFlagSet makes, with its
	// usage text: how `rspxdp completion` and `rspxdp man` read each
	// command's flags (docs.go).
	onFlagSet func(fs *flag.FlagSet, usage string)
}

// reloadable is something SIGHUP re-reads: certificates, a policy, a
// node's configuration.
type reloadable struct {
	what   string
	reload func() error
}

// onReload registers what SIGHUP re-reads, in registration order.
func (e *cliEnv) onReload(what string, reload func() error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reloads = append(e.reloads, reloadable{what, reload})
}

// reload runs every registered reload, on SIGHUP. A failed one keeps its
// old state (each reload function guarantees that) and says why; the
// process never stops for a SIGHUP.
func (e *cliEnv) reload() {
	e.mu.Lock()
	rs := append([]reloadable(nil), e.reloads...)
	log := e.log
	e.mu.Unlock()
	if log == nil {
		log = slog.New(slog.NewTextHandler(e.stderr, nil))
	}
	if len(rs) == 0 {
		log.Info("SIGHUP: nothing to reload")
		return
	}
	sdNotify(log, reloadingState())
	defer sdNotify(log, "READY=1")
	for _, r := range rs {
		if err := r.reload(); err != nil {
			log.Error("reload failed, keeping the old state", "what", r.what, "err", err)
		} else {
			log.Info("reloaded", "what", r.what)
		}
	}
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
		{name: "version", summary: "print the version, commit and Go version of this binary", run: runVersion},
		{name: "completion", summary: "print a shell completion script: bash, zsh or fish", run: runCompletion},
		{name: "man", summary: "write the manual pages (rspxdp(1), rspxdp-COMMAND(1)) into a directory", run: runMan},
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	return cmds
}

func main() {
	os.Exit(runMain(os.Args[1:]))
}

// runMain runs the binary with the process's signals: SIGINT and SIGTERM
// end the command gracefully (a registrar leaves, a PE drains), and SIGINT
// then exits 130 as shells expect of an interrupted command; a second one
// exits at once. SIGHUP never stops the process: it runs the command's
// reloads.
func runMain(args []string) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := &cliEnv{stdout: os.Stdout, stderr: os.Stderr}
	stopSig := make(chan os.Signal, 2)
	hup := make(chan os.Signal, 1)
	// Registered before any work, so SIGHUP cannot kill even at start.
	signal.Notify(hup, syscall.SIGHUP)
	signal.Notify(stopSig, os.Interrupt, syscall.SIGTERM)
	var interrupted atomic.Bool
	go func() {
		for {
			select {
			case <-hup:
				env.reload()
			case s := <-stopSig:
				if ctx.Err() != nil {
					os.Exit(exitCode(s))
				}
				interrupted.Store(s == os.Interrupt)
				cancel()
			}
		}
	}()
	code := run(ctx, env, args)
	if interrupted.Load() {
		return exitCode(os.Interrupt)
	}
	return code
}

// exitCode is the shell's status for death by s: 128 + its number.
func exitCode(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return 1
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
	if args[0] == "--version" || args[0] == "-version" {
		args = []string{"version"}
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
		case errors.Is(err, context.Canceled) && ctx.Err() != nil:
			return 0 // stopped by a signal: the command ended as asked
		default:
			fmt.Fprintf(env.stderr, "rspxdp %s: %s\n", c.name, tidyError(c.name, err))
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
