package loader

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/rspxdp/rspxdp/loader/loadertest"
)

// TestPackRing: packing a ring's slots four to an entry and unpacking them
// gives the slots back, for sizes that do and do not fill the last entry.
func TestPackRing(t *testing.T) {
	for _, n := range []int{1, 4, 7, 65537} {
		slots := make([]uint32, n)
		for i := range slots {
			slots[i] = uint32(i*7919) % (MaxBackendsLimit - 1)
		}
		keys, vals := packRing(slots)
		if len(keys) != int(ringEntries(uint32(n))) || len(vals) != len(keys) {
			t.Fatalf("%d slots: %d keys, %d values, want %d", n, len(keys), len(vals), ringEntries(uint32(n)))
		}
		if got := unpackRing(vals, uint32(n)); !slices.Equal(got, slots) {
			t.Errorf("%d slots: unpacked ring differs", n)
		}
	}
}

// TestMaxBackendsLimit: more PE slots than a ring slot can name is refused
// with an error that says so.
func TestMaxBackendsLimit(t *testing.T) {
	_, err := Open(Options{PinDir: t.TempDir() + "/x", MaxBackends: MaxBackendsLimit + 1})
	if err == nil {
		t.Fatal("Open accepted more PE slots than a ring slot holds")
	}
	t.Log(err)
}

// TestOpenRefusesOldRings: pinned Maglev rings of the layout before slots
// were packed (one 4-byte slot per entry) are refused with an error that
// says what to do, not left to the verifier or misread.
func TestOpenRefusesOldRings(t *testing.T) {
	pinDir := loadertest.PinDir(t)
	if err := os.MkdirAll(pinDir, 0o700); err != nil {
		t.Fatal(err)
	}
	old := &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 65537}
	outer, err := ebpf.NewMap(&ebpf.MapSpec{
		Name: "lb_rings", Type: ebpf.ArrayOfMaps, KeySize: 4, ValueSize: 4,
		MaxEntries: DefaultMaxServices, InnerMap: old,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer outer.Close()
	ring, err := ebpf.NewMap(old)
	if err != nil {
		t.Fatal(err)
	}
	defer ring.Close()
	if err := outer.Update(uint32(0), ring, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	if err := outer.Pin(filepath.Join(pinDir, "lb_rings")); err != nil {
		t.Fatal(err)
	}
	_, err = Open(Options{PinDir: pinDir, Resolver: restartHop, ConnTableSize: 4096})
	if err == nil || !strings.Contains(err.Error(), "older rspxdp") {
		t.Fatalf("Open over old rings: %v, want an error naming the older layout", err)
	}
	t.Log(err)
}
