package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/testenv"
)

// notifySocket listens where a Type=notify unit's NOTIFY_SOCKET points.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

func readNotify(t *testing.T, c *net.UnixConn, want string) {
	t.Helper()
	buf := make([]byte, 4096)
	deadline := time.Now().Add(15 * time.Second)
	for {
		_ = c.SetReadDeadline(deadline)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no %q notification: %v", want, err)
		}
		if strings.Contains(string(buf[:n]), want) {
			return
		}
	}
}

// The registrar tells systemd READY=1 once it serves and STOPPING=1 when it
// is asked to stop; a SIGHUP reload is bracketed by RELOADING=1 and READY=1.
func TestRegistrarNotifiesSystemd(t *testing.T) {
	c := notifySocket(t)
	ctx, cancel := context.WithCancel(context.Background())
	env := &cliEnv{stdout: &syncBuf{}, stderr: &syncBuf{}}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, env, []string{"registrar", "--id", "9", "--asap", "127.0.0.1:0", "--enrp", "127.0.0.1:0", "--leave-timeout", "0"})
	}()
	readNotify(t, c, "READY=1")
	env.onReload("test", func() error { return nil })
	env.reload()
	readNotify(t, c, "RELOADING=1\nMONOTONIC_USEC=")
	readNotify(t, c, "READY=1")
	cancel()
	readNotify(t, c, "STOPPING=1")
	<-done
}

// The units pass `systemd-analyze verify` (with ExecStart pointed at a
// built binary, since verify checks that the executable exists).
func TestSystemdUnitsVerify(t *testing.T) {
	analyze := testenv.RequireCommand(t, "systemd-analyze", "systemd")
	if testing.Short() {
		t.Skip("builds the binary")
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := makeBinary(t)
	dir := t.TempDir()
	for _, unit := range []string{"rspxdp-node.service", "rspxdp-registrar.service"} {
		b, err := os.ReadFile(filepath.Join(root, "deploy", "systemd", unit))
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, want := range []string{"Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "NoNewPrivileges=yes", "CapabilityBoundingSet="} {
			if !strings.Contains(text, want) {
				t.Errorf("%s lacks %q", unit, want)
			}
		}
		text = strings.ReplaceAll(text, "/usr/bin/rspxdp", bin)
		p := filepath.Join(dir, unit)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", p).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
	}
	node, _ := os.ReadFile(filepath.Join(dir, "rspxdp-node.service"))
	if !strings.Contains(string(node), "CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_NET_ADMIN\n") {
		t.Errorf("node unit's capabilities are not exactly CAP_BPF CAP_PERFMON CAP_NET_ADMIN")
	}
}

// `make install` puts the binary, both units and the configuration in
// place (staged under DESTDIR), and the configuration does not keep the
// data plane attached after the node exits.
func TestMakeInstall(t *testing.T) {
	testenv.RequireCommand(t, "make", "make")
	if testing.Short() {
		t.Skip("runs make install")
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	// -o build: install the binary made once, do not compile again.
	out, err := exec.Command("make", "-C", root, "-o", "build", "install", "DESTDIR="+dest, "BIN="+makeBinary(t)).CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{"usr/bin/rspxdp", "lib/systemd/system/rspxdp-node.service",
		"lib/systemd/system/rspxdp-registrar.service", "etc/rspxdp/rspxdp.yaml", "usr/share/doc/rspxdp/rspxdp.example.yaml"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("make install did not install %s: %v", f, err)
		}
	}
	cfg, err := os.ReadFile(filepath.Join(dest, "etc/rspxdp/rspxdp.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cfg), "keep-on-exit: true") {
		t.Error("the installed configuration keeps the data plane attached on exit")
	}
}
