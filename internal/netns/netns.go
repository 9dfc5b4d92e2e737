// Package netns gives tests network namespaces of their own: each NS is
// created under a unique name, removed when the test ends (whether it passed
// or not), and offers what a test needs inside it — running Go code on a
// thread that is in the namespace, starting processes there, veth pairs,
// addresses, routes and sysctls. Everything requires root; tests are skipped
// (or failed in CI) without it.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/rspxdp/rspxdp/internal/offload"
	"github.com/rspxdp/rspxdp/internal/testenv"
)

// seq makes names unique within the process; the PID across processes
// (go test runs packages in parallel).
var seq atomic.Uint32

// NS is a named network namespace owned by one test.
type NS struct {
	// Name is the namespace's name under /run/netns, usable with
	// `ip netns exec`.
	Name string
	h    vnetns.NsHandle
	nl   *netlink.Handle
}

// New creates a network namespace named rspxdp-<tag>-<pid>-<n> with its
// loopback up, and registers its removal with t.Cleanup. It requires root.
func New(t testing.TB, tag string) *NS {
	t.Helper()
	testenv.RequireRoot(t)
	name := fmt.Sprintf("rspxdp-%s-%d-%d", tag, os.Getpid(), seq.Add(1))
	h, err := create(name)
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	n := &NS{Name: name, h: h}
	t.Cleanup(func() {
		if err := n.remove(); err != nil {
			t.Errorf("remove netns %s: %v", name, err)
		}
	})
	n.nl, err = netlink.NewHandleAt(h)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	if err := n.LinkUp("lo"); err != nil {
		t.Fatal(err)
	}
	return n
}

// create makes the namespace on a locked thread and moves the thread back,
// since vishvananda/netns.NewNamed leaves the caller inside the new one.
func create(name string) (vnetns.NsHandle, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := vnetns.Get()
	if err != nil {
		return 0, fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	h, err := vnetns.NewNamed(name)
	if err != nil {
		return 0, err
	}
	if err := vnetns.Set(orig); err != nil {
		// The thread is stuck in the new namespace: keep it locked so
		// the runtime discards it instead of reusing it.
		runtime.LockOSThread()
		h.Close()
		vnetns.DeleteNamed(name)
		return 0, fmt.Errorf("return to original netns: %w", err)
	}
	return h, nil
}

func (n *NS) remove() error {
	var errs []error
	if n.nl != nil {
		n.nl.Close()
	}
	if err := n.h.Close(); err != nil {
		errs = append(errs, err)
	}
	// Unmounting /run/netns/<name> drops the last reference the test
	// holds; the kernel destroys the namespace, its veths with it, once
	// no process is left in it (Start's cleanups kill them first).
	if err := vnetns.DeleteNamed(n.Name); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Path is the namespace's bind mount, for tools that take a path.
func (n *NS) Path() string { return filepath.Join("/run/netns", n.Name) }

// Handle is an open descriptor of the namespace, valid until the test ends.
func (n *NS) Handle() vnetns.NsHandle { return n.h }

// Netlink is a netlink handle whose socket lives in the namespace: link,
// address and route calls through it act there without switching threads.
func (n *NS) Netlink() *netlink.Handle { return n.nl }

// Do runs fn on a locked OS thread that is in the namespace. Sockets created
// by fn stay in the namespace after Do returns, so a test can open a
// listener or dial inside and use the connection from any goroutine.
func (n *NS) Do(fn func() error) (err error) {
	runtime.LockOSThread()
	orig, err := vnetns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current netns: %w", err)
	}
	if err := vnetns.Set(n.h); err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", n.Name, err)
	}
	// Deferred, so the thread also returns when fn exits through
	// t.Fatal (runtime.Goexit).
	defer func() {
		defer orig.Close()
		if rerr := vnetns.Set(orig); rerr != nil {
			// Leave the thread locked: the runtime then ends it with
			// the goroutine rather than reusing a thread in the wrong
			// namespace.
			err = errors.Join(err, fmt.Errorf("leave netns %s: %w", n.Name, rerr))
			return
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// Command returns a command that runs name inside the namespace (through
// `ip netns exec`, which also gives it the namespace's /sys). It is not
// started.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command in the namespace and returns its combined output.
func (n *NS) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), n.Name, err, out)
	}
	return string(out), nil
}

// Start starts a command in the namespace; it is killed (by its process
// group, so children go too) and reaped when the test ends.
func (n *NS) Start(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := n.Command(context.Background(), name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s in %s: %v", name, n.Name, err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	return cmd
}

// Sysctl writes a value under /proc/sys of the namespace (net.* keys are
// per namespace), e.g. Sysctl("net/ipv4/ip_forward", "1").
func (n *NS) Sysctl(key, value string) error {
	return n.Do(func() error {
		if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, n.Name, err)
		}
		return nil
	})
}

// Iface is an interface of a namespace.
type Iface struct {
	NS    *NS
	Name  string
	Index int
	MAC   net.HardwareAddr
}

// LinkUp sets an interface up.
func (n *NS) LinkUp(ifname string) error {
	l, err := n.nl.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("link %s in %s: %w", ifname, n.Name, err)
	}
	if err := n.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up in %s: %w", ifname, n.Name, err)
	}
	return nil
}

// Iface looks an interface up by name.
func (n *NS) Iface(ifname string) (Iface, error) {
	l, err := n.nl.LinkByName(ifname)
	if err != nil {
		return Iface{}, fmt.Errorf("link %s in %s: %w", ifname, n.Name, err)
	}
	a := l.Attrs()
	return Iface{NS: n, Name: a.Name, Index: a.Index, MAC: a.HardwareAddr}, nil
}

// AddAddr adds an address with its prefix length to an interface. IPv6
// addresses skip duplicate address detection, so they are usable at once.
func (n *NS) AddAddr(ifname string, p netip.Prefix) error {
	l, err := n.nl.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("link %s in %s: %w", ifname, n.Name, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = syscall.IFA_F_NODAD
	}
	if err := n.nl.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add %s to %s in %s: %w", p, ifname, n.Name, err)
	}
	return nil
}

// AddRoute routes dst via gw (a default route when dst is 0.0.0.0/0 or
// ::/0).
func (n *NS) AddRoute(dst netip.Prefix, gw netip.Addr) error {
	r := &netlink.Route{
		Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())},
		Gw:  gw.AsSlice(),
	}
	if err := n.nl.RouteAdd(r); err != nil {
		return fmt.Errorf("route %s via %s in %s: %w", dst, gw, n.Name, err)
	}
	return nil
}

// Veth creates a veth pair with end aName in a and end bName in b (the same
// namespace twice is allowed), both up, and returns the two ends.
func Veth(a *NS, aName string, b *NS, bName string) (Iface, Iface, error) {
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aName},
		PeerName:      bName,
		PeerNamespace: netlink.NsFd(int(b.h)),
	}
	if err := a.nl.LinkAdd(v); err != nil {
		return Iface{}, Iface{}, fmt.Errorf("add veth %s/%s <-> %s/%s: %w", a.Name, aName, b.Name, bName, err)
	}
	for _, e := range []struct {
		ns   *NS
		name string
	}{{a, aName}, {b, bName}} {
		if err := e.ns.LinkUp(e.name); err != nil {
			return Iface{}, Iface{}, err
		}
	}
	ia, err := a.Iface(aName)
	if err != nil {
		return Iface{}, Iface{}, err
	}
	ib, err := b.Iface(bName)
	if err != nil {
		return Iface{}, Iface{}, err
	}
	return ia, ib, nil
}

// TxChecksumOff turns transmit checksum offload off on an interface of the
// namespace, as `ethtool -K IF tx off` but through the ethtool ioctl
// (package offload), so no ethtool binary is needed. Packets a veth hands on
// with only a partial checksum are dropped as bad once an XDP program
// redirects them natively (measured here), so a veth whose traffic crosses
// native XDP must send full checksums. ctx is unused; it stays for callers.
func (n *NS) TxChecksumOff(_ context.Context, ifname string) error {
	return n.Do(func() error {
		if err := offload.TxChecksumOff(ifname); err != nil {
			return fmt.Errorf("in %s: %w", n.Name, err)
		}
		return nil
	})
}
