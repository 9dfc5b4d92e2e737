package capture

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/gopacket/gopacket/layers"

	"github.com/rspxdp/rspxdp/wire"
)

// tcpStream reassembles one direction of a TCP connection.
type tcpStream struct {
	synced  bool
	next    uint32            // next expected sequence number
	buf     []byte            // in-order bytes not yet framed
	pending map[uint32][]byte // out-of-order segments by sequence number
}

// errUnframeable marks TCP bytes that do not start with a plausible
// message header; they are dropped up to the end of what was received.
var errUnframeable = errors.New("TCP stream bytes do not frame as ASAP/ENRP messages")

func (r *Reader) tcpSegment(base Message, tl *layers.TCP) {
	key := flowKey{base.Src, base.Dst}
	st := r.tcp[key]
	if tl.SYN {
		if len(r.tcp) >= maxFlows {
			clear(r.tcp)
		}
		st = &tcpStream{synced: true, next: tl.Seq + 1, pending: map[uint32][]byte{}}
		r.tcp[key] = st
	}
	payload := tl.Payload
	if st == nil {
		if len(payload) == 0 {
			return
		}
		// Capture started mid-connection: take this segment as the start.
		if len(r.tcp) >= maxFlows {
			clear(r.tcp)
		}
		st = &tcpStream{synced: true, next: tl.Seq, pending: map[uint32][]byte{}}
		r.tcp[key] = st
	}
	if len(payload) > 0 {
		st.add(tl.Seq, payload)
		r.frame1(base, st)
	}
	if tl.FIN || tl.RST {
		if len(st.buf) > 0 && tl.FIN {
			m := base
			m.Payload = bytes.Clone(st.buf)
			m.Err = fmt.Errorf("%w: %d bytes left at end of stream", errUnframeable, len(st.buf))
			r.queue = append(r.queue, m)
		}
		delete(r.tcp, key)
	}
}

// add places a segment: in order it extends buf, earlier bytes
// (retransmissions) are trimmed, later ones wait in pending.
func (st *tcpStream) add(seq uint32, p []byte) {
	if d := int32(st.next - seq); d > 0 {
		if int(d) >= len(p) {
			return
		}
		p = p[d:]
		seq = st.next
	}
	if seq != st.next {
		if len(st.pending) < maxPendingSegs {
			st.pending[seq] = bytes.Clone(p)
		}
		return
	}
	st.buf = append(st.buf, p...)
	st.next += uint32(len(p))
	for {
		q, ok := st.pending[st.next]
		if !ok {
			break
		}
		delete(st.pending, st.next)
		st.buf = append(st.buf, q...)
		st.next += uint32(len(q))
	}
	// Drop stale pending segments (already covered by buf).
	for s := range st.pending {
		if int32(st.next-s) > 0 {
			delete(st.pending, s)
		}
	}
}

// frame1 cuts complete messages off the front of st.buf.
func (r *Reader) frame1(base Message, st *tcpStream) {
	for len(st.buf) >= 4 {
		n, err := wire.MessageLength(st.buf)
		if err != nil || !base.Protocol.Known(wire.Type(st.buf[0])) {
			m := base
			m.Payload = bytes.Clone(st.buf)
			m.Err = errUnframeable
			r.queue = append(r.queue, m)
			st.buf = st.buf[:0]
			return
		}
		if n > len(st.buf) {
			if len(st.buf) > maxStreamBuffer {
				st.buf = st.buf[:0]
			}
			return
		}
		m := base
		m.Payload = bytes.Clone(st.buf[:n])
		r.queue = append(r.queue, m)
		st.buf = st.buf[n:]
	}
	if len(st.buf) == 0 {
		st.buf = nil
	}
}
