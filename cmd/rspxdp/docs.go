package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/rspxdp/rspxdp/internal/telemetry"
)

// commandDoc is what the completion scripts and manual pages say of one
// command: read from the very FlagSet the command parses with, so they
// cannot drift from the flags.
type commandDoc struct {
	name, summary, usage string
	flags                []*flag.Flag
}

// commandDocs runs every command with --help against a silent environment
// that records the FlagSet it builds (cliEnv.onFlagSet).
func commandDocs() []commandDoc {
	var docs []commandDoc
	for _, c := range commands() {
		docs = append(docs, docOf(c, c.name, c.summary))
	}
	return docs
}

// docOf runs c with args and --help and records what it documents under
// name.
func docOf(c command, name, summary string, args ...string) commandDoc {
	d := commandDoc{name: name, summary: summary}
	var fs *flag.FlagSet
	env := &cliEnv{stdout: io.Discard, stderr: io.Discard, onFlagSet: func(f *flag.FlagSet, usage string) {
		fs, d.usage = f, usage
	}}
	_ = c.run(context.Background(), env, append(args, "--help"))
	if fs != nil {
		fs.VisitAll(func(f *flag.Flag) { d.flags = append(d.flags, f) })
	}
	return d
}

// subcommandDocs are the commands reached through another one (rspxdp node
// detach), named command-sub. They get manual pages only: the completion
// scripts complete the command word and its flags.
func subcommandDocs() []commandDoc {
	subs := []struct{ cmd, sub, summary string }{
		{"node", "detach", "remove a data plane a node kept with --keep-on-exit (links and pins)"},
	}
	var docs []commandDoc
	for _, c := range commands() {
		for _, s := range subs {
			if s.cmd == c.name {
				docs = append(docs, docOf(c, s.cmd+"-"+s.sub, s.summary, s.sub))
			}
		}
	}
	return docs
}

const completionUsage = `Usage: rspxdp completion bash|zsh|fish

Prints a completion script for the shell, with every command and its flags:
  rspxdp completion bash > /etc/bash_completion.d/rspxdp
  rspxdp completion zsh  > "${fpath[1]}/_rspxdp"
  rspxdp completion fish > ~/.config/fish/completions/rspxdp.fish
The Debian package (make package) installs all three.`

func runCompletion(_ context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "completion", completionUsage)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want one shell: bash, zsh or fish")
	}
	docs := commandDocs()
	switch fs.Arg(0) {
	case "bash":
		_, err := io.WriteString(env.stdout, bashCompletion(docs))
		return err
	case "zsh":
		_, err := io.WriteString(env.stdout, "#compdef rspxdp\n# rspxdp completion for zsh, through its bash completion.\nautoload -U +X bashcompinit && bashcompinit\n"+bashCompletion(docs))
		return err
	case "fish":
		_, err := io.WriteString(env.stdout, fishCompletion(docs))
		return err
	}
	return usagef("shell %q: want bash, zsh or fish", fs.Arg(0))
}

func bashCompletion(docs []commandDoc) string {
	var b strings.Builder
	names := make([]string, 0, len(docs))
	for _, d := range docs {
		names = append(names, d.name)
	}
	b.WriteString("# rspxdp completion for bash: rspxdp completion bash > /etc/bash_completion.d/rspxdp\n")
	b.WriteString("_rspxdp() {\n\tlocal cur=${COMP_WORDS[COMP_CWORD]} opts\n")
	fmt.Fprintf(&b, "\tif [ \"$COMP_CWORD\" -eq 1 ]; then\n\t\tCOMPREPLY=($(compgen -W %q -- \"$cur\"))\n\t\treturn\n\tfi\n",
		strings.Join(names, " ")+" --help --version")
	b.WriteString("\tcase ${COMP_WORDS[1]} in\n")
	for _, d := range docs {
		var fl []string
		for _, f := range d.flags {
			fl = append(fl, dashes(f.Name)+f.Name)
		}
		fl = append(fl, "--help")
		fmt.Fprintf(&b, "\t%s) opts=%q ;;\n", d.name, strings.Join(fl, " "))
	}
	b.WriteString("\t*) opts=\"--help\" ;;\n\tesac\n")
	b.WriteString("\tif [[ $cur == -* ]]; then\n\t\tCOMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n\telse\n\t\tCOMPREPLY=($(compgen -f -- \"$cur\"))\n\tfi\n}\n")
	b.WriteString("complete -o filenames -F _rspxdp rspxdp\n")
	return b.String()
}

func fishCompletion(docs []commandDoc) string {
	var b strings.Builder
	b.WriteString("# rspxdp completion for fish: rspxdp completion fish > ~/.config/fish/completions/rspxdp.fish\n")
	var names []string
	for _, d := range docs {
		names = append(names, d.name)
	}
	sort.Strings(names)
	seen := "__fish_seen_subcommand_from " + strings.Join(names, " ")
	for _, d := range docs {
		fmt.Fprintf(&b, "complete -c rspxdp -f -n 'not %s' -a %s -d %s\n", seen, d.name, fishQuote(d.summary))
		for _, f := range d.flags {
			opt := "-l"
			if len(f.Name) == 1 {
				opt = "-s"
			}
			fmt.Fprintf(&b, "complete -c rspxdp -n '__fish_seen_subcommand_from %s' %s %s -d %s\n", d.name, opt, f.Name, fishQuote(firstLine(f.Usage)))
		}
	}
	return b.String()
}

// dashes is how the help spells a flag: -i, --metrics.
func dashes(name string) string {
	if len(name) == 1 {
		return "-"
	}
	return "--"
}

func fishQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

const manUsage = `Usage: rspxdp man DIR

Writes the manual pages into DIR: rspxdp.1 (the commands) and one
rspxdp-COMMAND.1 per command, with its description, examples and every
flag with its default. Read one with: man -l DIR/rspxdp-node.1
The Debian package (make package) installs them under /usr/share/man/man1.`

func runMan(_ context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "man", manUsage)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want the directory to write the pages into")
	}
	dir := fs.Arg(0)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("man: %w", err)
	}
	docs := commandDocs()
	version := telemetry.Build().Version
	var errs []error
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("man: %w", err))
		}
	}
	var top strings.Builder
	fmt.Fprintf(&top, ".TH RSPXDP 1 \"\" \"rspxdp %s\" \"rspxdp manual\"\n.SH NAME\nrspxdp \\- Reliable Server Pooling (RFC 5351-5356) with an XDP data plane\n", roff(version))
	top.WriteString(".SH SYNOPSIS\n\\fBrspxdp\\fR \\fICOMMAND\\fR [\\fIflags\\fR]\n.SH COMMANDS\n")
	for _, d := range docs {
		fmt.Fprintf(&top, ".TP\n\\fBrspxdp %s\\fR\n%s; see \\fBrspxdp-%s\\fR(1).\n", d.name, roff(d.summary), d.name)
	}
	top.WriteString(".SH SEE ALSO\nThe README and ARCHITECTURE.md of the source, and /usr/share/doc/rspxdp/rspxdp.example.yaml.\n")
	write("rspxdp.1", top.String())
	for _, d := range append(docs, subcommandDocs()...) {
		var b strings.Builder
		up := strings.ToUpper("rspxdp-" + d.name)
		fmt.Fprintf(&b, ".TH %s 1 \"\" \"rspxdp %s\" \"rspxdp manual\"\n.SH NAME\nrspxdp-%s \\- %s\n", up, roff(version), d.name, roff(d.summary))
		b.WriteString(".SH DESCRIPTION\n.nf\n")
		for _, l := range strings.Split(d.usage, "\n") {
			b.WriteString(roffLine(l) + "\n")
		}
		b.WriteString(".fi\n")
		if len(d.flags) > 0 {
			b.WriteString(".SH OPTIONS\n")
			for _, f := range d.flags {
				name, usage := flag.UnquoteUsage(f)
				fmt.Fprintf(&b, ".TP\n\\fB%s\\fR", roff(dashes(f.Name)+f.Name))
				if name != "" {
					fmt.Fprintf(&b, " \\fI%s\\fR", roff(name))
				}
				b.WriteString("\n" + roff(usage))
				if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
					fmt.Fprintf(&b, " (default: %s)", roff(f.DefValue))
				}
				b.WriteString("\n")
			}
		}
		b.WriteString(".SH SEE ALSO\n\\fBrspxdp\\fR(1)\n")
		write("rspxdp-"+d.name+".1", b.String())
	}
	return errors.Join(errs...)
}

// roff escapes text for a manual page: backslashes and hyphens.
func roff(s string) string {
	return strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(s)
}

// roffLine escapes one line of a no-fill block; a line starting with a dot
// or quote would be read as a request.
func roffLine(s string) string {
	s = roff(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}
