package selector

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/selector/policy"
)

// Golden values produced by rsplib's own poolhandlespacechecksum.c and
// poolElementNodeComputeChecksum logic on x86-64, as the two bytes it puts
// on the wire (read here big-endian).
var rsplibVectors = []struct {
	handle string
	id     uint32
	want   uint16
}{
	{"EchoPool", 0x12345678, 0x29a5},
	{"DaytimePool", 0xdeadbeef, 0xfa5e},
	{"x", 0x00000001, 0x87fe}, // odd-length handle: padded word
	{"CalcAppPool", 0xffffffff, 0xc30a},
}

func TestChecksumMatchesRsplib(t *testing.T) {
	h := newHS(t, Config{})
	if got := h.Checksum(1); got != 0xffff {
		t.Fatalf("empty checksum %#04x, want 0xffff", got)
	}
	for _, v := range rsplibVectors {
		if got := ElementChecksum(v.handle, v.id); got != v.want {
			t.Errorf("%s/%#x: %#04x, want %#04x", v.handle, v.id, got, v.want)
		}
		el := mkPE(v.id, policy.RoundRobin())
		mustRegister(t, h, v.handle, el, t0)
	}
	if got := h.Checksum(1); got != 0x6f0d {
		t.Fatalf("sum of four: %#04x, want rsplib's 0x6f0d", got)
	}
	if _, err := h.Deregister("DaytimePool", 0xdeadbeef, t0); err != nil {
		t.Fatal(err)
	}
	if got := h.Checksum(1); got != 0x74ae {
		t.Fatalf("after removal: %#04x, want rsplib's 0x74ae", got)
	}
	if got := h.Checksum(2); got != 0xffff {
		t.Fatalf("other home: %#04x", got)
	}
}

// recompute is the checksum from scratch, the reference the incremental
// one must equal.
func recompute(h *Handlespace) map[uint32]uint64 {
	out := map[uint32]uint64{}
	h.Range(func(handle string, pe PoolElement) bool {
		out[pe.Home] += checksumWords(checksumWords(0, []byte(handle)), []byte{byte(pe.ID >> 24), byte(pe.ID >> 16), byte(pe.ID >> 8), byte(pe.ID)})
		return true
	})
	return out
}

func TestChecksumIncrementalEqualsRecompute(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	h := newHS(t, Config{DrainTimeout: time.Second})
	now := t0
	for step := range 5000 {
		handle := fmt.Sprintf("pool-%d", rng.IntN(7))
		id := uint32(rng.IntN(40) + 1)
		switch op := rng.IntN(10); {
		case op < 5:
			el := mkPE(id, policy.RoundRobin())
			el.Home = uint32(rng.IntN(3) + 1)
			el.Lifetime = time.Duration(rng.IntN(5)+1) * time.Second
			h.Update(handle, el, now)
		case op < 7:
			h.Deregister(handle, id, now)
		case op < 8:
			h.ReportUnreachable(handle, id)
		case op < 9:
			h.TakeOver(uint32(rng.IntN(3)+1), uint32(rng.IntN(3)+1))
		default:
			now = now.Add(time.Duration(rng.IntN(1500)) * time.Millisecond)
			h.Sweep(now)
		}
		if step%50 == 0 || step == 4999 {
			want := recompute(h)
			var all uint64
			for home := uint32(1); home <= 3; home++ {
				all += want[home]
				if got := h.Checksum(home); got != finishChecksum(want[home]) {
					t.Fatalf("step %d home %d: incremental %#04x, recomputed %#04x", step, home, got, finishChecksum(want[home]))
				}
			}
			if got := h.HandlespaceChecksum(); got != finishChecksum(all) {
				t.Fatalf("step %d: total %#04x, want %#04x", step, got, finishChecksum(all))
			}
		}
	}
}

func TestTakeOverMovesChecksum(t *testing.T) {
	h := newHS(t, Config{})
	for id := uint32(1); id <= 4; id++ {
		el := mkPE(id, policy.RoundRobin())
		el.Home = 1 + id%2
		mustRegister(t, h, "p", el, t0)
	}
	before1, before2 := h.Checksum(1), h.Checksum(2)
	if n := h.TakeOver(2, 1); n != 2 {
		t.Fatalf("took over %d, want 2", n)
	}
	if h.Checksum(2) != 0xffff || h.Checksum(1) == before1 || before2 == 0xffff {
		t.Fatalf("checksums not moved: %#x %#x", h.Checksum(1), h.Checksum(2))
	}
	if got := h.Checksum(1); got != h.HandlespaceChecksum() {
		t.Fatalf("home 1 %#x != total %#x", got, h.HandlespaceChecksum())
	}
}
