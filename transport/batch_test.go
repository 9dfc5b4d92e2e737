package transport

import (
	"bytes"
	"testing"
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
