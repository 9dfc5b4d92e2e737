package transport

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/ishidawataru/sctp"
	"golang.org/x/sys/unix"
)

// fakeEntry is what recvmmsg left in one read-ahead entry.
type fakeEntry struct {
	data  []byte
	flags int
	ppid  uint32 // 0: no SCTP_SNDRCV data
}

// loadEntries fills ra's entries (and their slots of buf) as recvmmsg
// would have.
func loadEntries(t *testing.T, ra *readAhead, buf []byte, oobLen int, es []fakeEntry) {
	t.Helper()
	for i, e := range es {
		if len(e.data) > int(ra.iovs[i].Len) {
			t.Fatalf("entry %d: %d bytes do not fit its %d-byte slot", i, len(e.data), ra.iovs[i].Len)
		}
		copy(buf[i*ra.slot:], e.data)
		h := &ra.hdrs[i]
		h.n, h.hdr.Flags = uint32(len(e.data)), int32(e.flags)
		h.hdr.SetControllen(0)
		if e.ppid != 0 {
			c := sndrcvCmsg(e.ppid)
			copy(ra.oob[i*oobLen:], c)
			h.hdr.SetControllen(len(c))
		}
	}
	ra.n, ra.next = len(es), 0
}

// TestReadAheadJoinsEntries: the messages recvmmsg took come out whole and
// in order, whether they filled a slot, ran over several, were cut short
// by what had arrived, or were notifications to skip.
func TestReadAheadJoinsEntries(t *testing.T) {
	const max = 65535
	oobLen := unix.CmsgSpace(sndRcvInfoLen)
	eor := unix.MSG_EOR
	type want struct {
		msg      []byte
		complete bool
		eof      bool
		ppid     uint32
	}
	big := msg(0x05, 3*4096+100, 7)
	odd := msg(0x05, 1000, 9)
	tests := []struct {
		name    string
		entries func(slot int) []fakeEntry
		want    []want
	}{
		{
			name: "whole messages",
			entries: func(int) []fakeEntry {
				return []fakeEntry{{msg(0x05, 16, 1), eor, 11}, {msg(0x05, 40, 2), eor, 11}}
			},
			want: []want{{msg: msg(0x05, 16, 1), complete: true, ppid: 11}, {msg: msg(0x05, 40, 2), complete: true, ppid: 11}},
		},
		{
			name: "a message over four slots, then a small one",
			entries: func(slot int) []fakeEntry {
				return []fakeEntry{
					{big[:slot], 0, 11}, {big[slot : 2*slot], 0, 0}, {big[2*slot : 3*slot], 0, 0},
					{big[3*slot:], eor, 0}, {msg(0x05, 16, 3), eor, 11},
				}
			},
			want: []want{{msg: big, complete: true, ppid: 11}, {msg: msg(0x05, 16, 3), complete: true, ppid: 11}},
		},
		{
			name: "a part short of its slot, the rest in the next entry",
			entries: func(int) []fakeEntry {
				return []fakeEntry{{odd[:300], 0, 11}, {odd[300:], eor, 0}}
			},
			want: []want{{msg: odd, complete: true, ppid: 11}},
		},
		{
			name: "notifications are skipped, even in parts",
			entries: func(int) []fakeEntry {
				return []fakeEntry{
					{[]byte{1, 2, 3, 4}, sctp.MSG_NOTIFICATION | eor, 0},
					{[]byte{1, 2}, sctp.MSG_NOTIFICATION, 0}, {[]byte{3, 4}, sctp.MSG_NOTIFICATION | eor, 0},
					{msg(0x05, 16, 4), eor, 11},
				}
			},
			want: []want{{msg: msg(0x05, 16, 4), complete: true, ppid: 11}},
		},
		{
			name: "the rest not arrived yet: the part moves to the buffer's start",
			entries: func(slot int) []fakeEntry {
				return []fakeEntry{{msg(0x05, 16, 5), eor, 11}, {big[:slot], 0, 11}, {big[slot : 2*slot], 0, 0}}
			},
			want: []want{{msg: msg(0x05, 16, 5), complete: true, ppid: 11}, {msg: big[:2*4096], ppid: 11}},
		},
		{
			name: "shutdown after a message",
			entries: func(int) []fakeEntry {
				return []fakeEntry{{msg(0x05, 16, 6), eor, 11}, {nil, 0, 0}, {nil, 0, 0}}
			},
			want: []want{{msg: msg(0x05, 16, 6), complete: true, ppid: 11}, {eof: true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := make([]byte, max+1)
			ra := newReadAhead(buf, oobLen)
			if ra == nil || ra.slot != 4096 {
				t.Fatalf("read-ahead over %d bytes: %+v, want 16 slots of 4096", len(buf), ra)
			}
			loadEntries(t, ra, buf, oobLen, tt.entries(ra.slot))
			for i, w := range tt.want {
				g, ok := ra.nextMessage(buf, oobLen, max)
				if !ok {
					t.Fatalf("message %d: none", i)
				}
				if g.eof != w.eof || g.complete != w.complete {
					t.Fatalf("message %d: eof %v complete %v, want %v %v", i, g.eof, g.complete, w.eof, w.complete)
				}
				if w.eof {
					continue
				}
				if !w.complete && (!g.moved || g.off != 0) {
					t.Fatalf("message %d: a part left at %d (moved %v), want it at the start", i, g.off, g.moved)
				}
				if got := buf[g.off : g.off+g.n]; !bytes.Equal(got, w.msg) {
					t.Fatalf("message %d: %d bytes, want %d (first differ: %v)", i, len(got), len(w.msg), firstDiff(got, w.msg))
				}
				if !g.havePPID || g.ppid != w.ppid {
					t.Fatalf("message %d: ppid %d (%v), want %d", i, g.ppid, g.havePPID, w.ppid)
				}
			}
			if _, ok := ra.nextMessage(buf, oobLen, max); ok || ra.pending() {
				t.Fatal("more messages than were read")
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestReadAheadNeedsRoom: a receive buffer too small to split into useful
// slots reads one message per call, as before.
func TestReadAheadNeedsRoom(t *testing.T) {
	if ra := newReadAhead(make([]byte, 1025), unix.CmsgSpace(sndRcvInfoLen)); ra != nil {
		t.Fatalf("read-ahead over 1025 bytes: %d-byte slots", ra.slot)
	}
}

// TestBatchedMixedSizes: a batch of messages of every size class (inside
// one read-ahead slot, exactly one, one byte over, several, the maximum)
// comes back whole and in order through the echo peer, read with and
// without MessageBuffered between reads. Over SCTP (the test VM) this is
// recvmmsg's read-ahead and sendmmsg; elsewhere the one-by-one path.
func TestBatchedMixedSizes(t *testing.T) {
	forEachRig(t, func(t *testing.T, r rig) {
		ctx, c := dialEcho(t, r)
		bw, ok := c.(BatchWriter)
		if !ok {
			t.Skipf("%s sends messages one by one", r.name)
		}
		sizes := []int{16, 4096, 4097, 16, 9000, 20, 24, 65535, 16, 4095, 12000, 16}
		for i := range 40 {
			sizes = append(sizes, 8+i%5*4)
		}
		var batch [][]byte
		for i, n := range sizes {
			batch = append(batch, msg(0x05, n, uint32(i)))
		}
		p, _ := c.(Pending)
		for round := range 2 {
			if err := bw.WriteMessages(ctx, batch); err != nil {
				t.Fatal(err)
			}
			for i, want := range batch {
				if round == 1 && p != nil {
					p.MessageBuffered()
				}
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				got, err := c.ReadMessage(rctx)
				cancel()
				if err != nil {
					t.Fatalf("round %d message %d (%d bytes): %v", round, i, len(want), err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("round %d message %d: %d bytes, want %d (first differ at %d)", round, i, len(got), len(want), firstDiff(got, want))
				}
			}
		}
	})
}

// readAheadConn is a connection over one end of a SOCK_SEQPACKET pair with
// read-ahead forced on and es already taken, as if recvmmsg had read them
// (the host has no SCTP).
func readAheadConn(t *testing.T, es []fakeEntry) *sctpConn {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[1]) })
	cfg, err := quietConfig(t, ASAP).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	c, err := newSCTPConn(&SCTP{cfg: cfg}, fds[0], false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.checkPPID = true
	c.ra = newReadAhead(c.buf, len(c.oob))
	loadEntries(t, c.ra, c.buf, len(c.oob), es)
	return c
}

// TestReadAheadHandOut: a message handed out from read-ahead cannot be
// appended to over the ones after it; a closed connection hands out
// nothing more; and waiting for the rest of a message cut short is tied to
// the caller's context like every blocking read.
func TestReadAheadHandOut(t *testing.T) {
	ctx := context.Background()
	eor := unix.MSG_EOR
	t.Run("capped", func(t *testing.T) {
		first, second := msg(0x05, 16, 1), msg(0x05, 24, 2)
		c := readAheadConn(t, []fakeEntry{{first, eor, 0}, {second, eor, 0}})
		b, err := c.ReadMessage(ctx)
		if err != nil || !bytes.Equal(b, first) {
			t.Fatalf("first: % x, %v", b, err)
		}
		if cap(b) != len(b) {
			t.Fatalf("returned slice has room for %d bytes more", cap(b)-len(b))
		}
		_ = append(b, make([]byte, 64)...)
		if b, err := c.ReadMessage(ctx); err != nil || !bytes.Equal(b, second) {
			t.Fatalf("second after an append to the first: % x, %v", b, err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		c := readAheadConn(t, []fakeEntry{{msg(0x05, 16, 1), eor, 0}, {msg(0x05, 16, 2), eor, 0}})
		c.Close()
		if _, err := c.ReadMessage(ctx); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after Close: %v, want net.ErrClosed", err)
		}
	})
	t.Run("rest of a message waits under ctx", func(t *testing.T) {
		big := msg(0x05, 6000, 3)
		c := readAheadConn(t, []fakeEntry{{big[:4096], 0, 0}})
		rctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		_, err := c.ReadMessage(rctx)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read of the rest: %v, want the context's cancellation", err)
		}
		if d := time.Since(start); d > c.s.cfg.FrameTimeout/2 {
			t.Fatalf("cancellation took %v (frame timeout %v): the wait was not tied to ctx", d, c.s.cfg.FrameTimeout)
		}
	})
}
