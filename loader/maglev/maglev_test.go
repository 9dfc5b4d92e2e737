package maglev

import (
	"slices"
	"testing"
)

func TestIsPrime(t *testing.T) {
	for _, c := range []struct {
		n    uint32
		want bool
	}{{0, false}, {1, false}, {2, true}, {9, false}, {251, true}, {65536, false}, {65537, true}, {4294967291, true}} {
		if got := IsPrime(c.n); got != c.want {
			t.Errorf("IsPrime(%d) = %v, want %v", c.n, got, c.want)
		}
	}
}

func TestBuildRejects(t *testing.T) {
	if _, err := Build(nil, 65536, 1); err == nil {
		t.Error("size 65536 accepted")
	}
	if _, err := Build([]Member{{Key: 1, Weight: 1}, {Key: 1, Weight: 2}}, 251, 1); err == nil {
		t.Error("duplicate keys accepted")
	}
}

func TestBuildEmptyAndZeroWeight(t *testing.T) {
	table, err := Build([]Member{{Key: 7, Weight: 0}}, 251, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range table {
		if m != Empty {
			t.Fatalf("slot %d holds %d with no weighted member", i, m)
		}
	}
	table, err = Build([]Member{{Key: 7, Weight: 0}, {Key: 8, Weight: 3}}, 251, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range table {
		if m != 1 {
			t.Fatalf("slot %d holds %d, want the only weighted member", i, m)
		}
	}
}

// TestBuildOrderIndependent: nodes that learn PEs in different orders build
// tables that name the same members.
func TestBuildOrderIndependent(t *testing.T) {
	ms := []Member{{Key: 10, Weight: 1}, {Key: 20, Weight: 2}, {Key: 30, Weight: 3}, {Key: 40, Weight: 1}}
	a, err := Build(ms, DefaultSize, 99)
	if err != nil {
		t.Fatal(err)
	}
	rev := slices.Clone(ms)
	slices.Reverse(rev)
	b, err := Build(rev, DefaultSize, 99)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if ms[a[i]].Key != rev[b[i]].Key {
			t.Fatalf("slot %d: key %d vs %d", i, ms[a[i]].Key, rev[b[i]].Key)
		}
	}
}

// TestBuildSlotShares: slot counts follow the weights closely.
func TestBuildSlotShares(t *testing.T) {
	ms := []Member{{Key: 1, Weight: 1}, {Key: 2, Weight: 2}, {Key: 3, Weight: 3}}
	table, err := Build(ms, DefaultSize, 1)
	if err != nil {
		t.Fatal(err)
	}
	count := make([]int, len(ms))
	for _, m := range table {
		count[m]++
	}
	for i, c := range count {
		share := float64(c) / float64(len(table))
		want := float64(ms[i].Weight) / 6
		if d := share - want; d > 0.001 || d < -0.001 {
			t.Errorf("member %d: %.4f of slots, want %.4f", i, share, want)
		}
	}
}
