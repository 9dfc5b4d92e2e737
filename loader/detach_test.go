package loader

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/rspxdp/rspxdp/loader/loadertest"
)

// A data plane left attached and pinned (KeepOnExit) is removed by Detach:
// the program leaves the interface and the pins go. While a loader still
// holds the maps, Detach refuses and names the process.
func TestDetachRemovesKeptDataPlane(t *testing.T) {
	pinDir := loadertest.PinDir(t)
	inNetns(t, func() {
		addVeth(t, "dtt0", "dtt1")
		l, err := Open(Options{PinDir: pinDir, Interfaces: []string{"dtt0"}, Mode: ModeGeneric})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		// mapUsers skips this process, so a loader of our own does not
		// count: the refusal is tested against a child below.
		if err := l.Close(true); err != nil {
			t.Fatal(err)
		}
		if id, _ := xdpProg(t, "dtt0"); id == 0 {
			t.Fatal("Close(true) left no program attached")
		}
		// Another process holding a pinned map: refused, naming it.
		m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, "lb_config"), nil)
		if err != nil {
			t.Fatal(err)
		}
		holder := exec.Command("sleep", "60")
		holder.ExtraFiles = []*os.File{os.NewFile(uintptr(m.FD()), "lb_config")}
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		m.Close()
		_, err = Detach(pinDir)
		_ = holder.Process.Kill()
		_ = holder.Wait()
		if err == nil || !strings.Contains(err.Error(), "(sleep)") {
			t.Fatalf("detach while sleep holds a map: %v, want a refusal naming it", err)
		}
		if id, _ := xdpProg(t, "dtt0"); id == 0 {
			t.Fatal("the refused detach detached the program")
		}
		removed, err := Detach(pinDir)
		if err != nil {
			t.Fatalf("detach: %v", err)
		}
		if !strings.Contains(strings.Join(removed, " "), "link_dtt0") || len(removed) < 5 {
			t.Errorf("removed %v, want the link and the maps", removed)
		}
		if id, _ := xdpProg(t, "dtt0"); id != 0 {
			t.Errorf("program %d still attached after Detach", id)
		}
		if _, err := os.Stat(pinDir); !os.IsNotExist(err) {
			t.Errorf("pin dir still there: %v", err)
		}
		// Nothing left: a second Detach is a no-op.
		if removed, err := Detach(pinDir); err != nil || len(removed) != 0 {
			t.Errorf("second detach: %v %v", removed, err)
		}
	})
}

func TestFdinfoField(t *testing.T) {
	info := "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nmap_type:\t1\nmap_id:\t42\n"
	if v, ok := fdinfoField(info, "map_id"); !ok || v != "42" {
		t.Errorf("map_id = %q %v", v, ok)
	}
	if _, ok := fdinfoField(info, "prog_id"); ok {
		t.Error("found a field that is not there")
	}
}
