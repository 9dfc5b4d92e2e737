// Package testenv answers the questions every rspxdp test that needs more than
// plain Go asks: am I root, is this kernel feature here, where is the shared
// fixture directory — and decides what to do when the answer is no.
//
// The rule is the one CI depends on: outside CI a missing prerequisite skips
// the test with a message saying why; with CI set (CI=true) it fails, because
// CI is the one place where "skipped" would hide a missing install step.
package testenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// InCI reports whether the tests run in CI, where missing prerequisites are
// failures rather than skips.
func InCI() bool {
	v, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && v
}

// Require skips (outside CI) or fails (in CI) t unless ok is true. why says
// what is missing and, ideally, how to get it.
func Require(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if InCI() {
		t.Fatalf("prerequisite missing in CI: %s", why)
	}
	t.Skipf("skipped: %s (set CI=true to make this a failure)", why)
}

// RequireRoot needs euid 0: BPF, network namespaces and XDP all do.
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "needs root (run as root or with sudo)")
}

// RequireCommand needs an executable on PATH, named after the Debian package
// that ships it so the message tells the reader what to install.
func RequireCommand(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Require(t, err == nil, name+" not found on PATH (apt-get install -y "+debianPackage+")")
	return p
}

// ModuleRoot returns the directory holding go.mod, found by walking up from
// the working directory (go test runs each package in its own directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// SharedFixture returns the path of a file in ../shared/fixtures beside the
// project root (the team's shared material, never copied into the repo). The
// test is skipped outside CI, failed in CI, when the file is not there.
// RSPXDP_SHARED names another shared directory (for a worktree that is not
// beside it).
func SharedFixture(t testing.TB, name string) string {
	t.Helper()
	shared := os.Getenv("RSPXDP_SHARED")
	if shared == "" {
		root, err := ModuleRoot()
		if err != nil {
			t.Fatalf("shared fixture %s: %v", name, err)
		}
		shared = filepath.Join(root, "..", "shared")
	}
	p := filepath.Join(shared, "fixtures", name)
	_, err := os.Stat(p)
	Require(t, err == nil, "shared fixture "+p+" not present")
	return p
}
