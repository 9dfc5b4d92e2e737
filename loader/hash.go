package loader

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Flow is a flow as the client sends it: the input of the data path's
// Maglev hash.
type Flow struct {
	Src, Dst netip.AddrPort
	Proto    Proto
}

// FlowHash is the data path's flow hash (flow_hash in bpf/lb.c), bit for bit:
// the Maglev slot of a flow is FlowHash(f, seed) % table size. Every node of
// a registrar pool uses the same seed, so they all pick the same PE.
func FlowHash(f Flow, seed uint32) uint32 {
	src := addrWords(f.Src.Addr())
	dst := addrWords(f.Dst.Addr())
	h := seed
	h = mix(h, src[0])
	h = mix(h, dst[0])
	if !f.Dst.Addr().Unmap().Is4() {
		h = mix(h, src[1])
		h = mix(h, src[2])
		h = mix(h, src[3])
		h = mix(h, dst[1])
		h = mix(h, dst[2])
		h = mix(h, dst[3])
	}
	// The C code combines the ports as loaded from the packet (network byte
	// order) into a little-endian register.
	sp := uint32(bits.ReverseBytes16(f.Src.Port()))
	dp := uint32(bits.ReverseBytes16(f.Dst.Port()))
	h = mix(h, sp<<16|dp)
	h = mix(h, uint32(f.Proto))
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

func mix(h, k uint32) uint32 {
	k *= 0xcc9e2d51
	k = bits.RotateLeft32(k, 15)
	k *= 0x1b873593
	h ^= k
	h = bits.RotateLeft32(h, 13)
	return h*5 + 0xe6546b64
}

// addrWords lays an address out as struct addr in bpf/lb.h: network byte
// order, IPv4 in the first word, read as little-endian words (the BPF target
// is bpfel).
func addrWords(a netip.Addr) [4]uint32 {
	var w [4]uint32
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		w[0] = binary.LittleEndian.Uint32(b[:])
		return w
	}
	b := a.As16()
	for i := range w {
		w[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return w
}

// wordsAddr is addrWords' inverse.
func wordsAddr(w [4]uint32, family uint8) netip.Addr {
	var b [16]byte
	for i := range w {
		binary.LittleEndian.PutUint32(b[4*i:], w[i])
	}
	if family == 4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}
