package loader

import (
	"net/netip"
	"testing"

	"github.com/rspxdp/rspxdp/bpf"
	"github.com/rspxdp/rspxdp/loader/loadertest"
)

// TestVipSlotShared: two services whose keys share an lb_vips slot are
// both steered (the one that does not own the slot through lb_services);
// removing the owner hands the slot to the other without a packet passing
// unsteered, and removing that one too lets its packets pass.
func TestVipSlotShared(t *testing.T) {
	l, err := Open(Options{PinDir: loadertest.PinDir(t), Resolver: restartHop, ConnTableSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(false)
	want, _ := restartSvc.bpfKey()
	slot := vipSlot(want)
	var other ServiceKey
	for i := 1; ; i++ {
		other = ServiceKey{VIP: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 201, byte(i >> 8), byte(i)}), 80), Proto: TCP}
		if k, _ := other.bpfKey(); vipSlot(k) == slot {
			break
		}
	}
	be := []Backend{{ID: 1, Addr: netip.MustParseAddr("10.0.0.1"), Weight: 1, State: Active}}
	// The other service first: it owns the slot.
	for _, k := range []ServiceKey{other, restartSvc} {
		if err := l.UpsertService(Service{ServiceKey: k}); err != nil {
			t.Fatal(err)
		}
		if err := l.SetBackends(k, be); err != nil {
			t.Fatal(err)
		}
	}
	var v bpf.LbVipSlot
	if err := l.objs.LbVips.Lookup(slot, &v); err != nil {
		t.Fatal(err)
	}
	if k, _ := other.bpfKey(); v.Key != k || v.Spill == 0 {
		t.Fatalf("slot %d: %+v, want %s as owner, shared", slot, v, other)
	}
	if ret, _ := runOnce(t, l, synFrame()); ret != 3 {
		t.Fatalf("service sharing a slot it does not own: verdict %d, want XDP_TX", ret)
	}
	if err := l.RemoveService(other); err != nil {
		t.Fatal(err)
	}
	if err := l.objs.LbVips.Lookup(slot, &v); err != nil {
		t.Fatal(err)
	}
	if v.Key != want || v.Spill != 0 || v.Svc.Id != l.services[restartSvc].id {
		t.Fatalf("after removing the owner: slot %+v, want %s alone", v, restartSvc)
	}
	if ret, _ := runOnce(t, l, synFrame()); ret != 3 {
		t.Fatalf("after removing the owner: verdict %d, want XDP_TX", ret)
	}
	if d, err := l.Repair(); err != nil || len(d) != 0 {
		t.Fatalf("in sync: drifts %v, err %v", d, err)
	}
	if err := l.RemoveService(restartSvc); err != nil {
		t.Fatal(err)
	}
	if ret, _ := runOnce(t, l, synFrame()); ret != 2 {
		t.Fatalf("after removing both: verdict %d, want XDP_PASS", ret)
	}
}
