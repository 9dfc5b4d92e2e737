package main

// The shared command-line layer every subcommand uses: flag sets that accept
// flags after positional arguments, help that spells flags --flag, usage
// errors printed once and short, the --log-level and --log-format flags, and
// the flag value types that refuse what the YAML configuration refuses.
//
// Why the standard flag package and not cobra, kong or urfave/cli: seven
// engineers add flags to these subcommands in parallel, and a switch of
// library would rewrite every flag definition at once and conflict with all
// of them; the flag package already gives each subcommand its FlagSet, which
// is all the man page and completion generators need (they walk
// commands() and each FlagSet with VisitAll). What the libraries would add
// — interspersed flags, consistent help, one-line usage errors — is the
// hundred lines below.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rspxdp/rspxdp/node"
)

// newFlagSet returns a FlagSet for a subcommand that reports errors instead
// of exiting and prints nothing by itself: parseFlags prints --help to
// stdout, and run prints a usage error once, on stderr. Every FlagSet gets
// --log-level and --log-format; env.logger builds the logger they select.
func newFlagSet(env *cliEnv, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() { printHelp(env.stdout, fs, usage) }
	env.logLevel = "info"
	env.logFormat = "text"
	fs.Var(choiceFlag{&env.logLevel, []string{"debug", "info", "warn", "error"}}, "log-level", "log level: debug, info, warn or error")
	fs.Var(choiceFlag{&env.logFormat, []string{"text", "json"}}, "log-format", "log format: text (key=value) or json (one object per line)")
	if env.onFlagSet != nil {
		env.onFlagSet(fs, usage)
	}
	return fs
}

// setDefault changes a flag's default (before parsing), e.g. a quieter
// --log-level for a client tool.
func setDefault(fs *flag.FlagSet, name, value string) {
	f := fs.Lookup(name)
	if err := f.Value.Set(value); err != nil {
		panic(fmt.Sprintf("flag --%s: default %q: %v", name, value, err))
	}
	f.DefValue = value
}

// parseFlags parses args, accepting flags before, between and after
// positional arguments ("decode FILE --json"); "--" ends the flags and "-"
// is a positional argument (stdin by convention). The positionals are then
// fs.Args(). --help prints the help to stdout and returns flag.ErrHelp;
// any other mistake is a usageError with the flag spelt --flag.
func parseFlags(fs *flag.FlagSet, args []string) error {
	// The flag package calls Usage on every error too; help is printed
	// only when asked for.
	help := fs.Usage
	fs.Usage = func() {}
	defer func() { fs.Usage = help }()
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				help()
				return err
			}
			return usageError{flagError(err)}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	// Store the positionals as fs.Args(); after "--" nothing is a flag.
	return fs.Parse(append([]string{"--"}, pos...))
}

var (
	singleDashFlag = regexp.MustCompile(`(^|[ :])-([A-Za-z0-9][A-Za-z0-9-]+)`)
	invalidValue   = regexp.MustCompile(`^invalid (?:boolean )?value ("(?:[^"\\]|\\.)*") for (?:flag )?-([A-Za-z0-9-]+): (.*)$`)
)

// flagError rewrites the flag package's messages in the form the help and
// the documentation use: `--name "value": what is wrong`, "unknown flag
// --name".
func flagError(err error) string {
	s := err.Error()
	if m := invalidValue.FindStringSubmatch(s); m != nil {
		dash := "--"
		if len(m[2]) == 1 {
			dash = "-"
		}
		return fmt.Sprintf("%s%s %s: %s", dash, m[2], m[1], m[3])
	}
	s = strings.Replace(s, "flag provided but not defined", "unknown flag", 1)
	return singleDashFlag.ReplaceAllString(s, "$1--$2")
}

// printHelp prints a subcommand's usage text and its flags as --flag.
func printHelp(w io.Writer, fs *flag.FlagSet, usage string) {
	fmt.Fprintf(w, "%s\n\nFlags:\n", usage)
	fs.VisitAll(func(f *flag.Flag) {
		name, text := flag.UnquoteUsage(f)
		if t, ok := f.Value.(interface{ typeName() string }); ok && !strings.Contains(f.Usage, "`") {
			name = t.typeName()
		}
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		head := "  " + dash + f.Name
		if name != "" {
			head += " " + name
		}
		if def := f.DefValue; def != "" && def != "0" && def != "0s" && def != "false" && def != "[]" {
			text += fmt.Sprintf(" (default %s)", def)
		}
		fmt.Fprintf(w, "%s\n      %s\n", head, text)
	})
}

// logger returns the logger the --log-level and --log-format flags select,
// writing to stderr. Its level is env.level, which a reload may change.
func (e *cliEnv) logger() *slog.Logger {
	if e.log != nil {
		return e.log
	}
	e.level = new(slog.LevelVar)
	var l slog.Level
	_ = l.UnmarshalText([]byte(e.logLevel)) // checked by the flag
	e.level.Set(l)
	opts := &slog.HandlerOptions{Level: e.level}
	if e.logFormat == "json" {
		e.log = slog.New(slog.NewJSONHandler(e.stderr, opts))
	} else {
		e.log = slog.New(slog.NewTextHandler(e.stderr, opts))
	}
	return e.log
}

// choiceFlag is a string flag that takes one of a fixed set of words.
type choiceFlag struct {
	v     *string
	words []string
}

func (c choiceFlag) String() string {
	if c.v == nil {
		return ""
	}
	return *c.v
}

func (c choiceFlag) typeName() string { return strings.Join(c.words, "|") }

func (c choiceFlag) Set(s string) error {
	for _, w := range c.words {
		if s == w {
			*c.v = s
			return nil
		}
	}
	return fmt.Errorf("want %s", orList(c.words))
}

func orList(w []string) string {
	if len(w) == 1 {
		return w[0]
	}
	return strings.Join(w[:len(w)-1], ", ") + " or " + w[len(w)-1]
}

// durationFlag is a time.Duration flag that refuses negative durations, as
// the YAML configuration does.
type durationFlag struct{ v *time.Duration }

func newDuration(fs *flag.FlagSet, name string, def time.Duration, usage string) *time.Duration {
	v := def
	fs.Var(durationFlag{&v}, name, usage)
	return &v
}

func (d durationFlag) String() string {
	if d.v == nil {
		return ""
	}
	return d.v.String()
}

func (d durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration like 5s or 100ms")
	}
	if v < 0 {
		return errors.New("negative duration")
	}
	*d.v = v
	return nil
}

func (durationFlag) typeName() string { return "duration" }

// countFlag is an int flag that refuses negative numbers.
type countFlag struct{ v *int }

func newCount(fs *flag.FlagSet, name string, def int, usage string) *int {
	v := def
	fs.Var(countFlag{&v}, name, usage)
	return &v
}

func (c countFlag) String() string {
	if c.v == nil {
		return ""
	}
	return strconv.Itoa(*c.v)
}

func (countFlag) typeName() string { return "int" }

func (c countFlag) Set(s string) error {
	v, err := strconv.ParseInt(s, 0, strconv.IntSize)
	if err != nil {
		return errors.New("not a whole number")
	}
	if v < 0 {
		return errors.New("negative")
	}
	*c.v = int(v)
	return nil
}

// rateFlag is a float64 flag that refuses negative rates.
type rateFlag struct{ v *float64 }

func (r rateFlag) String() string {
	if r.v == nil {
		return ""
	}
	return strconv.FormatFloat(*r.v, 'g', -1, 64)
}

func (rateFlag) typeName() string { return "rate" }

func (r rateFlag) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return errors.New("not a number")
	}
	if v < 0 || v != v {
		return errors.New("negative")
	}
	*r.v = v
	return nil
}

// listFlag is a repeatable string flag; commas separate items too.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (*listFlag) typeName() string { return "list" }

// Set adds the comma-separated items of v.
func (l *listFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// checkedList is a listFlag whose every item must pass check: --peer
// refuses "notanaddr" at parse time, naming the flag.
type checkedList struct {
	l     *listFlag
	check func(string) error
}

func (c checkedList) String() string {
	if c.l == nil {
		return ""
	}
	return c.l.String()
}

func (checkedList) typeName() string { return "list" }

func (c checkedList) Set(v string) error {
	var items listFlag
	_ = items.Set(v)
	for _, it := range items {
		if err := c.check(it); err != nil {
			if it == v {
				return err
			}
			return fmt.Errorf("item %q: %w", it, err)
		}
	}
	*c.l = append(*c.l, items...)
	return nil
}

// checkPrefix accepts a CIDR prefix.
func checkPrefix(s string) error {
	if _, err := netip.ParsePrefix(s); err != nil {
		return errors.New("not a prefix like 10.0.0.0/8")
	}
	return nil
}

// checkHostPort accepts HOST:PORT as the node's configuration does.
func checkHostPort(s string) error {
	if err := node.CheckHostPort(s); err != nil {
		return errors.New("not HOST:PORT")
	}
	return nil
}

// checkIPPort accepts a literal IP:PORT.
func checkIPPort(s string) error {
	if _, err := netip.ParseAddrPort(s); err != nil {
		return errors.New("not IP:PORT (IPv6 in brackets)")
	}
	return nil
}

var (
	addrInText = regexp.MustCompile(`\[?[0-9A-Za-z.:-]*\]?:\d+`)
	dialLayer  = regexp.MustCompile(`^(\w+ )*dial( \w+)* \S+$`)
)

// tidyError prints err once per fact: without a leading layer that only
// repeats the command's name ("decode: decode: open"), without the dial
// layers of the transport and of package net that repeat an address an
// outer layer already named ("registrar 10.0.0.1:3863 unreachable: tcp
// dial ASAP 10.0.0.1:3863: dial tcp 10.0.0.1:3863: connect: connection
// refused"), with lines joined.
func tidyError(cmd string, err error) string {
	var lines []string
	for _, l := range strings.Split(err.Error(), "\n") {
		l = tidyLine(cmd, l)
		// errors.Join of the same failure twice, once with context.
		if l != "" && !slices.ContainsFunc(lines, func(o string) bool { return strings.HasSuffix(o, l) }) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}

func tidyLine(cmd, msg string) string {
	msg = strings.TrimPrefix(msg, cmd+": ")
	parts := strings.Split(msg, ": ")
	out := parts[:1]
	for _, p := range parts[1:] {
		if a := addrInText.FindString(p); a != "" && dialLayer.MatchString(p) && strings.Contains(strings.Join(out, ": "), a) {
			continue
		}
		out = append(out, p)
	}
	return strings.Join(out, ": ")
}
