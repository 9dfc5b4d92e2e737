package node

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/rspxdp/rspxdp/internal/netns"
	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/loader/loadertest"
)

// TestFailedStartLeavesNothing: a node whose start fails leaves nothing
// pinned, attached or listening, with or without keep-on-exit; only the
// pinned state of an earlier run stays, as it was found.
func TestFailedStartLeavesNothing(t *testing.T) {
	ns := netns.New(t, "failstart")
	if _, _, err := netns.Veth(ns, "f0", ns, "f1"); err != nil {
		t.Fatal(err)
	}
	base := func(pinDir string) Config {
		cfg := Defaults()
		cfg.Registrar.ID = 7
		cfg.Registrar.ASAP, cfg.Registrar.ENRP, cfg.Metrics = "127.0.0.1:3863", "127.0.0.1:9901", "127.0.0.1:9464"
		cfg.Dataplane.Interfaces = []string{"f0"}
		cfg.Dataplane.Mode = "generic"
		cfg.Dataplane.PinDir = pinDir
		cfg.Dataplane.ConnTableSize = 4096 // capacity is not the subject
		cfg.VIPs = []VIP{mustVIP(t, "echo=10.200.1.1:7/tcp")}
		return cfg
	}
	pins := func(dir string) []string {
		ents, err := os.ReadDir(dir)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	free := func(addrs ...string) {
		t.Helper()
		for _, a := range addrs {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				t.Errorf("%s still in use after the failed start: %v", a, err)
				continue
			}
			ln.Close()
		}
	}
	attached := func() bool {
		l, err := ns.Netlink().LinkByName("f0")
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached
	}
	cases := []struct {
		name    string
		mod     func(*Config)
		hold    string // an address kept busy so the start fails there
		wantErr string
	}{
		{"nonexistent interface", func(c *Config) { c.Dataplane.Interfaces = []string{"f0", "nonexistent0"} }, "", "nonexistent0"},
		{"nonexistent interface, keep-on-exit", func(c *Config) {
			c.Dataplane.Interfaces = []string{"f0", "nonexistent0"}
			c.Dataplane.KeepOnExit = true
		}, "", "nonexistent0"},
		{"ENRP port busy, keep-on-exit", func(c *Config) { c.Dataplane.KeepOnExit = true }, "127.0.0.1:9901", "9901"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pinDir := loadertest.PinDir(t)
			cfg := base(pinDir)
			c.mod(&cfg)
			err := ns.Do(func() error {
				if c.hold != "" {
					ln, err := net.Listen("tcp", c.hold)
					if err != nil {
						return err
					}
					defer ln.Close()
				}
				n, err := New(context.Background(), cfg, nil)
				if err == nil {
					n.close()
					t.Fatal("start succeeded")
				}
				if !strings.Contains(err.Error(), c.wantErr) {
					t.Errorf("error %q does not name %q", err, c.wantErr)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if p := pins(pinDir); len(p) > 0 {
				t.Errorf("left pinned: %v", p)
			}
			if attached() {
				t.Error("left XDP attached to f0")
			}
			must(t, ns.Do(func() error {
				free(cfg.Registrar.ASAP, cfg.Registrar.ENRP, cfg.Metrics)
				return nil
			}))
		})
	}

	t.Run("earlier run's state kept", func(t *testing.T) {
		pinDir := loadertest.PinDir(t)
		must(t, ns.Do(func() error {
			l, err := loader.Open(loader.Options{PinDir: pinDir, Interfaces: []string{"f1"}, Mode: loader.ModeGeneric})
			if err != nil {
				return err
			}
			return l.Close(true)
		}))
		before := pins(pinDir)
		cfg := base(pinDir)
		cfg.Dataplane.Interfaces = []string{"f1", "nonexistent0"}
		cfg.Dataplane.KeepOnExit = true
		must(t, ns.Do(func() error {
			if _, err := New(context.Background(), cfg, nil); err == nil {
				t.Fatal("start succeeded")
			}
			return nil
		}))
		if after := pins(pinDir); strings.Join(after, " ") != strings.Join(before, " ") {
			t.Errorf("pins %v after the failed start, want the earlier run's %v", after, before)
		}
		l, err := ns.Netlink().LinkByName("f1")
		must(t, err)
		if l.Attrs().Xdp == nil || !l.Attrs().Xdp.Attached {
			t.Error("the earlier run's program was detached from f1")
		}
		// Leave the namespace clean for the bpffs unmount.
		must(t, ns.Do(func() error {
			l, err := loader.Open(loader.Options{PinDir: pinDir, Interfaces: []string{"f1"}, Mode: loader.ModeGeneric})
			if err != nil {
				return err
			}
			return l.Close(false)
		}))
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
