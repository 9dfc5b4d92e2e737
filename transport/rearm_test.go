package transport

import (
	"context"
	"testing"
	"time"
)

// A caller that gives every message its own context and cancels it when
// the message is done (asap.DumpHandlespace pages through a handle table
// that way) must be able to send the next message at once: the ended
// context's interrupt must not land on the next write's deadline.
func TestWriteAfterCancelledContext(t *testing.T) {
	for _, r := range rigs() {
		if !r.stream && r.name != "sctp" {
			continue // the SEQPACKET rig has no listener to dial
		}
		t.Run(r.name, func(t *testing.T) {
			r.require(t)
			tr := r.transport(t, quietConfig(t, ENRP))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			ln, err := tr.Listen(ctx, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			startEchoOn(t, ln)
			c, err := tr.Dial(ctx, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for i := 0; i < 200; i++ {
				mctx, mcancel := context.WithTimeout(ctx, 5*time.Second)
				err := c.WriteMessage(mctx, msg(1, 16, uint32(i)))
				if err == nil {
					_, err = c.ReadMessage(mctx)
				}
				mcancel()
				if err != nil {
					t.Fatalf("message %d, after %d contexts cancelled: %v", i, i, err)
				}
			}
		})
	}
}
