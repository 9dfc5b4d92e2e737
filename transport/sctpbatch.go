package transport

import (
	"errors"
	"unsafe"

	"github.com/ishidawataru/sctp"
	"golang.org/x/sys/unix"
)

// Batched SCTP I/O (issue 15). Under load a registrar's time goes into the
// kernel's per-message work; a system call per message on top of it (read,
// then a peek for the next one, then a send) was a third of what rspxdp's
// registrar spent per resolution in the test VM. recvmmsg takes every
// message already queued with one call, and sendmmsg sends a batch of
// answers with one: the kernel still walks its SCTP path once per message,
// but the entries, exits and the Go runtime's bookkeeping around each call
// are paid once per batch.

// mmsghdr is struct mmsghdr: one message's header and the length the kernel
// received or sent for it (Go pads the struct to its alignment as C does).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// readAheadEntries is how many messages one recvmmsg may take; readAheadMin
// is the smallest slot worth splitting the receive buffer into (smaller
// ones would split ordinary messages across entries).
const (
	readAheadEntries = 16
	readAheadMin     = 512
)

// readAhead holds the messages one recvmmsg took and not yet handed out.
// The entries split the connection's receive buffer into equal slots, so
// read-ahead costs no memory beyond the headers: a message longer than a
// slot fills it and goes on in the next entry (SCTP delivers a message in
// parts when the buffer is short), and is joined up in place.
type readAhead struct {
	hdrs []mmsghdr
	iovs []unix.Iovec
	oob  []byte // one SCTP_SNDRCV control buffer per entry
	slot int    // bytes per entry (the last takes the buffer's rest)
	n    int    // entries the last recvmmsg filled
	next int    // the next of them to hand out
	err  error  // an error a probe met, for the next ReadMessage
}

// newReadAhead splits buf into entries; nil when buf is too small for it
// to be worth it.
func newReadAhead(buf []byte, oobLen int) *readAhead {
	slot := len(buf) / readAheadEntries
	if slot < readAheadMin {
		return nil
	}
	ra := &readAhead{
		hdrs: make([]mmsghdr, readAheadEntries),
		iovs: make([]unix.Iovec, readAheadEntries),
		oob:  make([]byte, readAheadEntries*oobLen),
		slot: slot,
	}
	for i := range ra.hdrs {
		end := (i + 1) * slot
		if i == readAheadEntries-1 {
			end = len(buf)
		}
		ra.iovs[i].Base = &buf[i*slot]
		ra.iovs[i].SetLen(end - i*slot)
		h := &ra.hdrs[i].hdr
		h.Iov = &ra.iovs[i]
		h.Iovlen = 1
		h.Control = &ra.oob[i*oobLen]
	}
	return ra
}

// pending reports whether entries are left to hand out.
func (ra *readAhead) pending() bool { return ra != nil && ra.next < ra.n }

// fill takes what is queued on fd (non-blocking): at least one message, or
// EAGAIN.
func (ra *readAhead) fill(fd int, oobLen int) error {
	ra.n, ra.next = 0, 0
	for i := range ra.hdrs {
		ra.hdrs[i].hdr.SetControllen(oobLen)
		ra.hdrs[i].hdr.Flags = 0
		ra.hdrs[i].n = 0
	}
	r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&ra.hdrs[0])),
		uintptr(len(ra.hdrs)), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return errno
	}
	ra.n = int(r)
	return nil
}

// entry is one filled read-ahead entry.
type entry struct {
	off, n int // where in the buffer, how many bytes
	flags  int
	oob    []byte
}

// take hands out entry ra.next.
func (ra *readAhead) take(oobLen int) entry {
	i := ra.next
	ra.next++
	h := &ra.hdrs[i]
	return entry{off: i * ra.slot, n: int(h.n), flags: int(h.hdr.Flags), oob: ra.oob[i*oobLen : i*oobLen+int(h.hdr.Controllen)]}
}

// gather is one message taken from read-ahead entries: buf[0:n] once it
// was moved to the buffer's start (moved), else buf[off:off+n].
type gather struct {
	off, n          int
	ppid            uint32
	havePPID        bool
	complete, moved bool
	eof             bool
}

// nextMessage joins the next message from the read-ahead entries in buf.
// A notification is skipped whole. A message whose end is not among the
// entries (the rest is still on its way) is moved to the buffer's start,
// complete false, for the caller to read the rest after it. A zero-length
// entry is the peer's shutdown (eof). ok is false when the entries held
// nothing but notifications.
func (ra *readAhead) nextMessage(buf []byte, oobLen int, max int) (g gather, ok bool) {
	for ra.pending() {
		e := ra.take(oobLen)
		if e.flags&sctp.MSG_NOTIFICATION != 0 {
			for e.flags&unix.MSG_EOR == 0 && ra.pending() {
				e = ra.take(oobLen)
			}
			continue
		}
		if e.n == 0 && len(e.oob) == 0 {
			ra.next = ra.n // nothing follows a shutdown
			return gather{eof: true}, true
		}
		g = gather{off: e.off, n: e.n}
		if p, ok := ppidOf(e.oob); ok {
			g.ppid, g.havePPID = p, true
		}
		for e.flags&unix.MSG_EOR == 0 {
			if g.n > max || !ra.pending() {
				// Oversized (the caller says so), or the rest has
				// not arrived: the part goes to the buffer's start
				// and the caller reads on after it.
				copy(buf, buf[g.off:g.off+g.n])
				g.off, g.moved = 0, true
				return g, true
			}
			e = ra.take(oobLen)
			// The part before filled its entry, so this one usually
			// starts right where it ends; copy handles both cases.
			copy(buf[g.off+g.n:], buf[e.off:e.off+e.n])
			g.n += e.n
			if p, ok := ppidOf(e.oob); ok {
				g.ppid, g.havePPID = p, true
			}
		}
		g.complete = true
		return g, true
	}
	return gather{}, false
}

// writeBatch is the sendmmsg scratch space of a connection: every entry
// carries the connection's SCTP_SNDRCV data (its PPID).
type writeBatch struct {
	hdrs     []mmsghdr
	iovs     []unix.Iovec
	off, end int // entries [off, end) still to send
	err      error
}

// writeBatchEntries bounds the messages one sendmmsg sends.
const writeBatchEntries = 64

func newWriteBatch(cmsg []byte) *writeBatch {
	wb := &writeBatch{hdrs: make([]mmsghdr, writeBatchEntries), iovs: make([]unix.Iovec, writeBatchEntries)}
	for i := range wb.hdrs {
		h := &wb.hdrs[i].hdr
		h.Iov = &wb.iovs[i]
		h.Iovlen = 1
		h.Control = &cmsg[0]
		h.SetControllen(len(cmsg))
	}
	return wb
}

// set loads msgs (at most writeBatchEntries, none empty) into the entries.
func (wb *writeBatch) set(msgs [][]byte) {
	for i, m := range msgs {
		wb.iovs[i].Base = &m[0]
		wb.iovs[i].SetLen(len(m))
	}
	wb.off, wb.end, wb.err = 0, len(msgs), nil
}

// clear drops the batch's references to the messages it sent.
func (wb *writeBatch) clear() {
	for i := 0; i < wb.end; i++ {
		wb.iovs[i].Base = nil
	}
	wb.off, wb.end = 0, 0
}

// send sends what is left of the batch with flags (MSG_MORE); false when
// the socket's buffer is full (EAGAIN) and the rest must wait.
func (wb *writeBatch) send(fd int, flags int) bool {
	for wb.off < wb.end {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&wb.hdrs[wb.off])),
			uintptr(wb.end-wb.off), uintptr(flags), 0, 0)
		switch {
		case errors.Is(errno, unix.EAGAIN):
			return false
		case errno != 0:
			wb.err = errno
			return true
		}
		// Fewer than asked: the next one met a full buffer or an
		// error; the next call says which.
		wb.off += int(r)
	}
	return true
}
