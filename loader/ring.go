package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"

	"github.com/rspxdp/rspxdp/bpf"
)

// ringLanes is how many Maglev slots one entry of a ring map holds
// (RING_LANES in bpf/lb.h): 16-bit backend slot numbers, four to the eight
// bytes an array map gives every value, so a ring takes a quarter of the
// cache it took with one 32-bit slot per (padded) value.
const ringLanes = 4

// ringEntry is one value of a ring map: ringLanes consecutive slots.
type ringEntry [ringLanes]uint16

// ringEntries is the number of map entries of a ring of size slots.
func ringEntries(size uint32) uint32 { return (size + ringLanes - 1) / ringLanes }

// packRing turns a ring's slots (backend slot numbers, 0 = none) into its
// map's keys and values.
func packRing(slots []uint32) ([]uint32, []ringEntry) {
	n := ringEntries(uint32(len(slots)))
	keys := make([]uint32, n)
	vals := make([]ringEntry, n)
	for i := range keys {
		keys[i] = uint32(i)
	}
	for i, s := range slots {
		vals[i/ringLanes][i%ringLanes] = uint16(s)
	}
	return keys, vals
}

// unpackRing is the inverse of packRing: the first size slots.
func unpackRing(vals []ringEntry, size uint32) []uint32 {
	out := make([]uint32, 0, len(vals)*ringLanes)
	for _, e := range vals {
		for _, s := range e {
			out = append(out, uint32(s))
		}
	}
	return out[:min(uint32(len(out)), size)]
}

// checkPinnedRings refuses pinned rings of another layout (before rings
// were packed, a slot was a __u32 value): the program would not pass the
// verifier over them, or would misread them. No pinned lb_rings, or an
// empty one, passes.
func checkPinnedRings(pinDir string, valueSize uint32) error {
	path := filepath.Join(pinDir, bpf.LbMapLbRings)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	outer, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		return fmt.Errorf("open pinned %s: %w", path, err)
	}
	defer outer.Close()
	var id uint32
	var inner *ebpf.Map
	it := outer.Iterate()
	if !it.Next(&id, &inner) {
		return nil
	}
	defer inner.Close()
	if inner.ValueSize() != valueSize {
		return fmt.Errorf("pinned state in %s is from an older rspxdp (Maglev ring entries of %d bytes, not %d): remove it (rspxdp node detach --pin-dir %s) and start again",
			pinDir, inner.ValueSize(), valueSize, pinDir)
	}
	return nil
}
