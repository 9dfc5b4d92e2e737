// Package maglev builds weighted Maglev lookup tables (Eisenbud et al.,
// "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016).
//
// A table maps each of its M slots (M prime) to one member. Every member walks
// its own permutation of the slots, derived only from its key and the seed,
// and members take turns claiming their next free slot. Two consequences that
// rspxdp relies on: nodes that build a table from the same members, weights
// and seed get the same table, whatever order the members arrive in; and
// removing one of N members reassigns about 1/N of the slots, leaving nearly
// every other slot where it was.
package maglev

import (
	"cmp"
	"fmt"
	"slices"
)

// DefaultSize is the table size used when none is configured: a prime large
// enough that 1,000 members each hold 65 slots.
const DefaultSize = 65537

// Member is one entry candidate. Key identifies it across nodes and rebuilds
// (rspxdp uses the control plane's PE identifier); members with weight 0 get
// no slot.
type Member struct {
	Key    uint64
	Weight uint32
}

// Empty marks a slot with no member (only when no member has weight).
const Empty = -1

// IsPrime reports whether n is prime; table sizes must be.
func IsPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	for d := uint32(2); uint64(d)*uint64(d) <= uint64(n); d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// Build returns a table of size slots, each holding the index in members of
// the member that owns it, or Empty. Members claim slots in proportion to
// their weights. Keys must be distinct.
func Build(members []Member, size uint32, seed uint32) ([]int, error) {
	if !IsPrime(size) {
		return nil, fmt.Errorf("maglev table size %d is not prime", size)
	}
	table := make([]int, size)
	for i := range table {
		table[i] = Empty
	}
	// Visit members in key order so the input order never matters.
	order := make([]int, 0, len(members))
	var maxW uint32
	seen := make(map[uint64]bool, len(members))
	for i, m := range members {
		if seen[m.Key] {
			return nil, fmt.Errorf("maglev member key %d appears twice", m.Key)
		}
		seen[m.Key] = true
		if m.Weight == 0 {
			continue
		}
		order = append(order, i)
		maxW = max(maxW, m.Weight)
	}
	if len(order) == 0 {
		return table, nil
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(members[a].Key, members[b].Key) })

	n := len(order)
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	next := make([]uint64, n)
	credit := make([]uint64, n)
	m := uint64(size)
	for j, i := range order {
		k := members[i].Key
		offset[j] = hash64(k, uint64(seed)<<32|0x6d61676c) % m
		skip[j] = hash64(k, uint64(seed)<<32|0x65763221)%(m-1) + 1
	}
	filled := uint64(0)
	for filled < m {
		for j, i := range order {
			// Integer credits: the heaviest member claims one slot per round,
			// the others in proportion, with no floating point to differ
			// between nodes.
			credit[j] += uint64(members[i].Weight)
			for credit[j] >= uint64(maxW) {
				credit[j] -= uint64(maxW)
				c := (offset[j] + next[j]*skip[j]) % m
				for table[c] != Empty {
					next[j]++
					c = (offset[j] + next[j]*skip[j]) % m
				}
				table[c] = i
				next[j]++
				filled++
				if filled == m {
					return table, nil
				}
			}
		}
	}
	return table, nil
}

// hash64 is splitmix64's finaliser over key and salt: cheap, well spread,
// and identical on every platform.
func hash64(key, salt uint64) uint64 {
	z := key + salt + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
