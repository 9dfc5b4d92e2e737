package selector

import (
	"net/netip"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/selector/policy"
)

var t0 = time.Unix(1_700_000_000, 0)

func addr(i uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func mkPE(id uint32, s policy.Settings) PoolElement {
	return PoolElement{
		ID: id, Home: 1,
		Transport: Transport{Addrs: []netip.Addr{addr(id)}, Port: 7, Protocol: TCP},
		Policy:    s, Lifetime: 10 * time.Second,
	}
}

func newHS(t testing.TB, cfg Config) *Handlespace {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func mustRegister(t testing.TB, h *Handlespace, handle string, el PoolElement, now time.Time) {
	t.Helper()
	if _, err := h.Register(handle, el, now); err != nil {
		t.Fatalf("register %d: %v", el.ID, err)
	}
}

func ids(els []PoolElement) []uint32 {
	out := make([]uint32, len(els))
	for i, e := range els {
		out[i] = e.ID
	}
	return out
}

func resolveIDs(t testing.TB, h *Handlespace, handle string, n int) []uint32 {
	t.Helper()
	got, err := h.Resolve(handle, n, nil)
	if err != nil {
		t.Fatalf("resolve %s: %v", handle, err)
	}
	return ids(got)
}
