package selector

// The handlespace checksum of RFC 5353 (ENRP Presence, audit): a 16-bit
// one's complement sum over every element's pool handle and identifier.
// rsplib sums, per element, the pool handle bytes as 16-bit words (a final
// odd byte padded with zero) and then the identifier in network byte order,
// adds the per-element sums of all elements a registrar owns, folds the
// carries and complements. rsplib reads the words in host order and writes
// the result unswapped; one's complement sums commute with byte swapping
// (RFC 1071), so summing big-endian words and sending the result
// big-endian, as here, puts the same bytes on the wire.
//
// Per-element sums are kept unfolded in 64-bit accumulators, one per home
// registrar, so adding or removing an element is one addition: nothing is
// recomputed over the handlespace.

// checksumWords adds b to sum as big-endian 16-bit words.
func checksumWords(sum uint64, b []byte) uint64 {
	for len(b) >= 2 {
		sum += uint64(b[0])<<8 | uint64(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	return sum
}

// finishChecksum folds the carries and complements.
func finishChecksum(sum uint64) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// ElementChecksum returns the checksum contribution of one element as
// rsplib's poolElementNodeComputeChecksum would, finished, for tests and
// for diagnosing audit mismatches element by element.
func ElementChecksum(handle string, id uint32) uint16 {
	return finishChecksum(checksumWords(0, []byte(handle)) + uint64(id>>16) + uint64(id&0xffff))
}

// Checksum returns the checksum over the active elements whose home
// registrar is home: the value a registrar sends in ENRP Presence and
// compares in audits. An empty set gives 0xffff.
func (h *Handlespace) Checksum(home uint32) uint16 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return finishChecksum(h.owners[home])
}

// HandlespaceChecksum returns the checksum over all active elements.
func (h *Handlespace) HandlespaceChecksum() uint16 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return finishChecksum(h.total)
}

// Homes returns the home registrar identifiers that own active elements.
func (h *Handlespace) Homes() []uint32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]uint32, 0, len(h.owners))
	for k := range h.owners {
		out = append(out, k)
	}
	return out
}
