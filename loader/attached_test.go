package loader

import (
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/rspxdp/rspxdp/loader/loadertest"
)

// TestAttached: the check holds while the program is attached, and names
// the interface once it is gone or after Close.
func TestAttached(t *testing.T) {
	pinDir := loadertest.PinDir(t)
	inNetns(t, func() {
		addVeth(t, "att0", "att1")
		l, err := Open(Options{PinDir: pinDir, Interfaces: []string{"att0"}, Mode: ModeGeneric, Resolver: restartHop})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		if err := l.Attached(); err != nil {
			t.Errorf("Attached after Open: %v", err)
		}
		lk, err := netlink.LinkByName("att0")
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkDel(lk); err != nil {
			t.Fatal(err)
		}
		if err := l.Attached(); err == nil || !strings.Contains(err.Error(), "att0") {
			t.Errorf("Attached after the interface went: %v, want an error naming att0", err)
		}
		if err := l.Close(false); err != nil {
			t.Logf("close: %v", err)
		}
		if err := l.Attached(); err == nil {
			t.Error("Attached after Close: no error")
		}
	})
}
