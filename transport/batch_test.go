package transport

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func TestWriteMessagesBatch(t *testing.T) {
	forEachRig(t, func(t *testing.T, r rig) {
		ctx, c := dialEcho(t, r)
		bw, ok := c.(BatchWriter)
		if !ok {
			if r.name == "tcp" || r.name == "tls" {
				t.Fatalf("%s connection is not a BatchWriter", r.name)
			}
			t.Skipf("%s sends messages one by one", r.name)
		}

		// A malformed message anywhere refuses the whole batch before
		// anything reaches the wire.
		bad := msg(0x05, 16, 1)
		bad[3]++ // header length no longer matches
		if err := bw.WriteMessages(ctx, [][]byte{msg(0x05, 16, 1), bad}); err == nil {
			t.Fatal("batch with a malformed message accepted")
		}

		var batch [][]byte
		for i := range 50 {
			batch = append(batch, msg(0x05, 8+i*13, uint32(i)))
		}
		// Twice, so the reused batch buffer is exercised.
		for round := range 2 {
			if err := bw.WriteMessages(ctx, batch); err != nil {
				t.Fatal(err)
			}
			for i, want := range batch {
				got, err := c.ReadMessage(ctx)
				if err != nil {
					t.Fatalf("round %d message %d: %v", round, i, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("round %d message %d: got % x, want % x", round, i, got, want)
				}
			}
		}
	})
}

// TestMessageBuffered: Pending says true only when the next ReadMessage has
// a message without waiting, and never loses or reorders one. Packet rigs
// (SCTP, seqpacket) see the socket's queue; the stream rigs only what they
// already read, so there it is only checked never to claim a message that
// is not there.
func TestMessageBuffered(t *testing.T) {
	forEachRig(t, func(t *testing.T, r rig) {
		ctx, c := dialEcho(t, r)
		p, ok := c.(Pending)
		if !ok {
			t.Fatalf("%s connection is not Pending", r.name)
		}
		if p.MessageBuffered() {
			t.Fatal("a message buffered before anything was sent")
		}
		// A read whose context ended leaves the connection's deadline in
		// the past; that is no message (a server answering from its
		// reader would otherwise hold its answer back and wait).
		rctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		if _, err := c.ReadMessage(rctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("read with nothing sent: %v, want the context's deadline", err)
		}
		cancel()
		if p.MessageBuffered() {
			t.Fatal("a message buffered after a read timed out with nothing sent")
		}
		bw := c.(BatchWriter)
		want := [][]byte{msg(0x05, 16, 1), msg(0x05, 40, 2), msg(0x05, 24, 3)}
		if err := bw.WriteMessages(ctx, want); err != nil {
			t.Fatal(err)
		}
		for i, w := range want {
			if i > 0 && !r.stream {
				// The echo of every message was sent: it arrives.
				deadline := time.Now().Add(5 * time.Second)
				for !p.MessageBuffered() {
					if time.Now().After(deadline) {
						t.Fatalf("message %d echoed but never buffered", i)
					}
					time.Sleep(time.Millisecond)
				}
			}
			got, err := c.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if !bytes.Equal(got, w) {
				t.Fatalf("message %d: got % x, want % x", i, got, w)
			}
		}
		if p.MessageBuffered() {
			t.Fatal("a message buffered after every one was read")
		}
	})
}
