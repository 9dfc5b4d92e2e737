package loader

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
