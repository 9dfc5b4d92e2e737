package transport

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"
)

// benchRigs are the transports benchmarked on this host (SCTP only where
// the kernel has it).
func benchRigs() []rig {
	var out []rig
	for _, r := range rigs() {
		if r.name == "sctp" && SCTPSupported() != nil {
			continue
		}
		out = append(out, r)
	}
	return out
}

func benchConfig() Config {
	return Config{Protocol: ASAP, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// BenchmarkRoundTrip: one small message (32 bytes, the size of a handle
// resolution) to an echo server and back, on loopback.
func BenchmarkRoundTrip(b *testing.B) {
	for _, r := range benchRigs() {
		b.Run(r.name, func(b *testing.B) {
			tr := r.transport(b, benchConfig())
			ln, err := tr.Listen(context.Background(), benchAddr(r, b))
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				c, err := ln.Accept(ctx)
				if err != nil {
					return
				}
				defer c.Close()
				for {
					m, err := c.ReadMessage(ctx)
					if err != nil {
						return
					}
					if c.WriteMessage(ctx, m) != nil {
						return
					}
				}
			}()
			c, err := tr.Dial(ctx, ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			m := msg(0x05, 32, 1)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if err := c.WriteMessage(ctx, m); err != nil {
					b.Fatal(err)
				}
				if _, err := c.ReadMessage(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "roundtrips/s")
		})
	}
}

// BenchmarkThroughput: messages/s one way on one connection, for a small
// (64-byte) and a large (4000-byte, a big handle table) message.
func BenchmarkThroughput(b *testing.B) {
	for _, r := range benchRigs() {
		for _, size := range []int{64, 4000} {
			b.Run(r.name+"/"+strconv.Itoa(size)+"B", func(b *testing.B) {
				tr := r.transport(b, benchConfig())
				ln, err := tr.Listen(context.Background(), benchAddr(r, b))
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				n := b.N
				done := make(chan error, 1)
				go func() {
					c, err := ln.Accept(ctx)
					if err != nil {
						done <- err
						return
					}
					defer c.Close()
					for i := 0; i < n; i++ {
						if _, err := c.ReadMessage(ctx); err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
				c, err := tr.Dial(ctx, ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				m := msg(0x0b, size, 1)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for i := 0; i < n; i++ {
					if err := c.WriteMessage(ctx, m); err != nil {
						b.Fatal(err)
					}
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msgs/s")
			})
		}
	}
}

var benchSeq int

func benchAddr(r rig, b *testing.B) string {
	if r.name == "seqpacket" {
		benchSeq++
		return "@rspxdp-bench-" + strconv.Itoa(benchSeq) + "-" + strconv.Itoa(int(time.Now().UnixNano()%1e9))
	}
	return "127.0.0.1:0"
}
