package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/node"
)

const nodeDetachUsage = `Usage: rspxdp node detach [--pin-dir DIR | --config rspxdp.yaml]

Removes a data plane a node left attached and pinned with --keep-on-exit
(dataplane.keep-on-exit): the XDP program leaves every interface it was
linked to and the maps' pins go, with the directory when nothing else is in
it. It refuses while a process still holds the maps — a running node:
stop it first (without --keep-on-exit it detaches by itself on exit).

Examples:
  systemctl stop rspxdp-node && rspxdp node detach
  rspxdp node detach --config /etc/rspxdp/rspxdp.yaml`

func runNodeDetach(_ context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "node detach", nodeDetachUsage)
	pinDir := fs.String("pin-dir", "", "bpffs directory the node pinned into (default: the configuration's, else "+loader.DefaultPinDir+")")
	cfgPath := fs.String("config", "", "take the pin directory from this YAML configuration")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	dir := *pinDir
	if dir == "" && *cfgPath != "" {
		cfg, err := node.LoadFile(*cfgPath)
		if err != nil {
			return usagef("%v", err)
		}
		dir = cfg.Dataplane.PinDir
	}
	if dir == "" {
		dir = loader.DefaultPinDir
	}
	removed, err := loader.Detach(dir)
	if err != nil {
		return err
	}
	if len(removed) == 0 {
		fmt.Fprintf(env.stdout, "nothing pinned in %s\n", dir)
		return nil
	}
	fmt.Fprintf(env.stdout, "detached and unpinned %s: %s\n", dir, strings.Join(removed, " "))
	return nil
}

// warnPrivateBPFFS says so when pinDir's bpffs is not the one the host's
// init sees: `ip netns exec` remounts /sys in a private mount namespace, so
// pins land on a private bpffs that bpftool on the host cannot see and that
// vanishes with the process, and a restart cannot adopt the data plane.
// The way to run a node in a named network namespace is
// `nsenter --net=/run/netns/NAME rspxdp node ...`, which keeps the mounts.
func warnPrivateBPFFS(log *slog.Logger, pinDir string) {
	if private, ok := privateBPFFS(pinDir); ok && private {
		log.Warn("the pin directory is on a private bpffs (run under `ip netns exec`?): host tools cannot see the pins and a restart cannot adopt the data plane; use `nsenter --net=/run/netns/NAME rspxdp node ...` instead",
			"pin_dir", pinDir)
	}
}

// privateBPFFS reports whether the node runs as `ip netns exec` starts it:
// in a named network namespace (one of /run/netns) and in a mount namespace
// of its own, unlike its parent's (ip unshares the mounts to remount /sys;
// nsenter --net keeps them) — and pinDir's filesystem is not the one the
// parent sees at that path (the demo's bpffs, mounted by the parent outside
// /sys, propagates in and is shared). ok is false when that cannot be read.
func privateBPFFS(pinDir string) (private, ok bool) {
	ppid := os.Getppid()
	self, err1 := nsInode("/proc/self/ns/mnt")
	parent, err2 := nsInode(fmt.Sprintf("/proc/%d/ns/mnt", ppid))
	if err1 != nil || err2 != nil {
		return false, false
	}
	if self == parent {
		return false, true
	}
	net, err := nsInode("/proc/self/ns/net")
	if err != nil {
		return false, false
	}
	named, _ := filepath.Glob("/run/netns/*")
	inNamed := false
	for _, n := range named {
		if ino, err := nsInode(n); err == nil && ino == net {
			inNamed = true
		}
	}
	if !inNamed {
		return false, true
	}
	dir := filepath.Dir(filepath.Clean(pinDir))
	var ours, theirs unix.Stat_t
	if unix.Stat(dir, &ours) != nil {
		return true, true // not even there: the loader would mount a private one
	}
	if unix.Stat(filepath.Join(fmt.Sprintf("/proc/%d/root", ppid), dir), &theirs) != nil {
		return true, true
	}
	return ours.Dev != theirs.Dev, true
}

func nsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}
