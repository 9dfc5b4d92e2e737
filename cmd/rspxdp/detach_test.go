package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/netns"
	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/loader/loadertest"
)

// `rspxdp node detach` removes what a node with --keep-on-exit left.
func TestNodeDetach(t *testing.T) {
	pinDir := loadertest.PinDir(t)
	ns := netns.New(t, "detach")
	if _, _, err := netns.Veth(ns, "dt0", ns, "dt1"); err != nil {
		t.Fatal(err)
	}
	err := ns.Do(func() error {
		l, err := loader.Open(loader.Options{PinDir: pinDir, Interfaces: []string{"dt0"}, Mode: loader.ModeGeneric})
		if err != nil {
			return err
		}
		return l.Close(true)
	})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "node", "detach", "--pin-dir", pinDir)
	if code != 0 || !strings.Contains(out, "detached and unpinned "+pinDir) || !strings.Contains(out, "link_dt0") {
		t.Fatalf("node detach: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, _ = runCLI(t, "node", "detach", "--pin-dir", pinDir)
	if code != 0 || !strings.Contains(out, "nothing pinned") {
		t.Errorf("second detach: exit %d, %q", code, out)
	}
	if code, _, errs := runCLI(t, "node", "detach", "--pin-dir", t.TempDir()+"/x"); code != 1 || !strings.Contains(errs, "not on a bpffs") {
		t.Errorf("detach off bpffs: exit %d, %q", code, errs)
	}
}

// On the host the pin directory's bpffs is init's; under `ip netns exec`
// (a private mount namespace with its own /sys) the node says so.
func TestPrivateBPFFSWarning(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "iproute2")
	if private, ok := privateBPFFS(loader.DefaultPinDir); ok && private {
		t.Fatalf("the test itself counts as under ip netns exec")
	}
	bin := makeBinary(t)
	ns := netns.New(t, "privfs")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// No such interface: the node stops after the warning, before attaching.
	out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", ns.Name, bin, "node", "-i", "nosuchif0",
		"--vip", "w=10.200.9.1:80/tcp", "--asap", "127.0.0.1:0", "--enrp", "127.0.0.1:0", "--metrics", "").CombinedOutput()
	if !strings.Contains(string(out), "private bpffs") || !strings.Contains(string(out), "nsenter --net") {
		t.Errorf("node under ip netns exec did not warn of the private bpffs:\n%s", out)
	}
	// nsenter --net keeps the mounts: no warning.
	if nsenter, err := exec.LookPath("nsenter"); err == nil {
		out, _ := exec.CommandContext(ctx, nsenter, "--net="+ns.Path(), bin, "node", "-i", "nosuchif0",
			"--vip", "w=10.200.9.1:80/tcp", "--asap", "127.0.0.1:0", "--enrp", "127.0.0.1:0", "--metrics", "").CombinedOutput()
		if strings.Contains(string(out), "private bpffs") {
			t.Errorf("node under nsenter --net warned of a private bpffs:\n%s", out)
		}
	}
}
