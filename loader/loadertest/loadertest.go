// Package loadertest helps tests that load rspxdp's BPF programs: each test
// gets its own bpffs, so pins never leak between tests or into the host's
// /sys/fs/bpf.
package loadertest

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rspxdp/rspxdp/internal/testenv"
)

// PinDir mounts a private bpffs in a temporary directory (unmounted when the
// test ends) and returns a pin directory path inside it, not yet created.
// It requires root.
func PinDir(t testing.TB) string {
	t.Helper()
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount bpffs %s: %v", dir, err)
		}
	})
	return filepath.Join(dir, "rspxdp")
}
