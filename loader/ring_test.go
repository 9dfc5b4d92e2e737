package loader

import (
	"slices"
	"testing"
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
