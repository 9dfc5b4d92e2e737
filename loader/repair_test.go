package loader

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/rspxdp/rspxdp/bpf"
	"github.com/rspxdp/rspxdp/loader/loadertest"
)

// TestRepairKernelMaps: entries deleted or changed in the kernel's maps
// behind the loader's back (as with bpftool) are found by Repair, which
// names each one and puts it back; the data path steers again at once.
func TestRepairKernelMaps(t *testing.T) {
	pinDir := loadertest.PinDir(t)
	l, err := Open(Options{PinDir: pinDir, Resolver: restartHop, ConnTableSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(false)
	other := ServiceKey{VIP: netip.MustParseAddrPort("10.200.1.2:80"), Proto: TCP}
	for _, k := range []ServiceKey{restartSvc, other} {
		if err := l.UpsertService(Service{ServiceKey: k}); err != nil {
			t.Fatal(err)
		}
		var bes []Backend
		for i := uint32(1); i <= 3; i++ {
			bes = append(bes, Backend{ID: i, Addr: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), Weight: 1, State: Active})
		}
		if err := l.SetBackends(k, bes); err != nil {
			t.Fatal(err)
		}
	}
	if d, err := l.Repair(); err != nil || len(d) != 0 {
		t.Fatalf("in sync: drifts %v, err %v", d, err)
	}
	pinned := func(name string) *ebpf.Map {
		m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, name), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	services, vips, rings, backends := pinned("lb_services"), pinned("lb_vips"), pinned("lb_rings"), pinned("lb_backends")

	// 1. The VIP's service entry deleted, from both service tables: its
	// packets pass unsteered.
	key, _ := restartSvc.bpfKey()
	if err := services.Delete(&key); err != nil {
		t.Fatal(err)
	}
	if err := vips.Update(vipSlot(key), &bpf.LbVipSlot{}, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	if ret, _ := runOnce(t, l, synFrame()); ret != 2 {
		t.Fatalf("after deleting the service entry: verdict %d, want XDP_PASS", ret)
	}
	// 2. The other service's ring deleted, 3. one of its PE slots zeroed,
	// 4. a slot of this service's ring changed, 5. a stray service added.
	otherID := l.services[other].id
	if err := rings.Delete(otherID); err != nil {
		t.Fatal(err)
	}
	slot := l.services[other].backends[2]
	if err := backends.Update(slot, &bpf.LbBackend{}, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	var ring *ebpf.Map
	if err := rings.Lookup(l.services[restartSvc].id, &ring); err != nil {
		t.Fatal(err)
	}
	if err := ring.Update(uint32(5), ringEntry{999, 999, 999, 999}, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	ring.Close()
	strayKey, _ := ServiceKey{VIP: netip.MustParseAddrPort("10.200.9.9:80"), Proto: TCP}.bpfKey()
	if err := services.Update(&strayKey, &bpf.LbService{Id: 77}, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}

	drifts, err := l.Repair()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range drifts {
		got = append(got, d.String())
	}
	slices.Sort(got)
	for _, want := range []string{
		"lb_backends: PE 2 of 10.200.1.2:80/tcp",
		"lb_rings: ring of 10.200.1.1:80/tcp was changed: rebuilt",
		"lb_rings: ring of 10.200.1.2:80/tcp was missing: rebuilt",
		"lb_services: removed a service entry this node never wrote (id 77)",
		"lb_services: service 10.200.1.1:80/tcp was missing",
		fmt.Sprintf("lb_vips: slot %d held service id 0", vipSlot(key)),
	} {
		if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, want) }) {
			t.Errorf("no drift %q in %q", want, got)
		}
	}
	if len(got) != 6 {
		t.Errorf("%d drifts, want 6: %q", len(got), got)
	}
	if ret, _ := runOnce(t, l, synFrame()); ret != 3 {
		t.Errorf("after the repair: verdict %d, want XDP_TX", ret)
	}
	if err := services.Lookup(&strayKey, new(bpf.LbService)); err == nil {
		t.Error("stray service entry still there")
	}
	if d, err := l.Repair(); err != nil || len(d) != 0 {
		t.Errorf("after the repair: drifts %v, err %v", d, err)
	}
}
