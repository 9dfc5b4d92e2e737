package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Detach removes a data plane a node left behind with KeepOnExit: it unpins
// the XDP links in pinDir (which detaches the program from each interface
// once nothing else holds the link) and the maps, then the directory.
//
// It refuses while a process still holds the pinned maps open — a running
// node, whose data plane would vanish under it — naming the process. Pins it
// does not recognise as rspxdp's (link_*, lb_*) are left alone, and so is
// the directory then. It returns what it removed.
func Detach(pinDir string) ([]string, error) {
	ok, err := isBPFFS(filepath.Dir(filepath.Clean(pinDir)))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%s is not on a bpffs: nothing rspxdp pinned can be there", pinDir)
	}
	ents, err := os.ReadDir(pinDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pin dir: %w", err)
	}
	if users, err := mapUsers(pinDir, ents); err != nil {
		return nil, err
	} else if len(users) > 0 {
		return nil, fmt.Errorf("the pinned maps in %s are in use by %s: stop it first (a running node detaches on exit unless --keep-on-exit)", pinDir, strings.Join(users, ", "))
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		p := filepath.Join(pinDir, e.Name())
		switch {
		case strings.HasPrefix(e.Name(), "link_"):
			l, err := link.LoadPinnedLink(p, nil)
			if err != nil {
				errs = append(errs, fmt.Errorf("open pinned link %s: %w", p, err))
				continue
			}
			err = l.Unpin()
			l.Close() // the last reference: the program leaves the interface
			if err != nil {
				errs = append(errs, fmt.Errorf("unpin %s: %w", p, err))
				continue
			}
		case strings.HasPrefix(e.Name(), "lb_"):
			if err := os.Remove(p); err != nil {
				errs = append(errs, fmt.Errorf("unpin %s: %w", p, err))
				continue
			}
		default:
			continue // not ours
		}
		removed = append(removed, e.Name())
	}
	if err := os.Remove(pinDir); err != nil && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove pin dir: %w", err))
	}
	return removed, errors.Join(errs...)
}

// mapUsers names the processes ("pid 123 (rspxdp)") other than this one that
// hold a map pinned in pinDir open, from /proc/*/fdinfo's map_id.
func mapUsers(pinDir string, ents []os.DirEntry) ([]string, error) {
	ids := map[string]bool{}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "lb_") {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, e.Name()), nil)
		if err != nil {
			continue
		}
		info, err := m.Info()
		if err == nil {
			if id, ok := info.ID(); ok {
				ids[strconv.FormatUint(uint64(id), 10)] = true
			}
		}
		m.Close()
	}
	if len(ids) == 0 {
		return nil, nil
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	self := strconv.Itoa(os.Getpid())
	var users []string
	for _, p := range procs {
		pid := p.Name()
		if pid == self || pid[0] < '0' || pid[0] > '9' {
			continue
		}
		fds, err := os.ReadDir(filepath.Join("/proc", pid, "fdinfo"))
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, fd := range fds {
			b, err := os.ReadFile(filepath.Join("/proc", pid, "fdinfo", fd.Name()))
			if err != nil {
				continue
			}
			if id, ok := fdinfoField(string(b), "map_id"); ok && ids[id] {
				comm, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
				users = append(users, fmt.Sprintf("pid %s (%s)", pid, strings.TrimSpace(string(comm))))
				break
			}
		}
	}
	return users, nil
}

func fdinfoField(s, key string) (string, bool) {
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}
