package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ensureBPFFS makes sure pinDir's parent is on a bpffs. /sys/fs/bpf is
// mounted when it is not (as on hosts without systemd); anywhere else a
// missing bpffs is the caller's mistake, since mounting over an arbitrary
// directory would hide its contents.
func ensureBPFFS(pinDir string) error {
	parent := filepath.Dir(filepath.Clean(pinDir))
	ok, err := isBPFFS(parent)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	if parent != "/sys/fs/bpf" {
		return fmt.Errorf("pin dir %s: %s is not on a bpffs (mount -t bpf bpf %s)", pinDir, parent, parent)
	}
	if err := unix.Mount("bpf", parent, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs on %s: %w", parent, err)
	}
	return nil
}

func isBPFFS(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, fmt.Errorf("pin dir parent %s does not exist", dir)
		}
		return false, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return uint32(st.Type) == unix.BPF_FS_MAGIC, nil
}
