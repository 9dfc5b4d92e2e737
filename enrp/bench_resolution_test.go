package enrp

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/wire"
)

// BenchmarkResolutionRoundTrip measures the registrar's ASAP resolution
// path end to end on loopback (TCP on the host; RSPXDP_TEST_TRANSPORT=sctp
// where the kernel has SCTP): a pool of 3 PEs, Handle Resolutions asking for
// all 3, the client writing pre-encoded requests and reading raw answers so
// that what is counted is the server's work: ns/op, allocs/op (the whole
// process, the client's raw path allocates nothing) and the process's CPU
// time per resolution. "sequential" is one request at a time on one
// association (latency: every answer pays the server's wake-ups);
// "conns=4x4" keeps 4 requests in flight on each of 4 associations.
//
//	go test -run '^$' -bench ResolutionRoundTrip -benchtime 20000x -count 3 ./enrp
func BenchmarkResolutionRoundTrip(b *testing.B) {
	for _, tc := range []struct {
		name               string
		conns, outstanding int
	}{{"sequential", 1, 1}, {"conns=4x4", 4, 4}} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := itConfig(1)
			cfg.KeepAliveInterval, cfg.KeepAliveTimeout = time.Minute, time.Minute
			n := startNode(b, cfg)
			n.srv.mu.Lock()
			for i := range 3 {
				n.srv.core.Step(0, netip.Addr{}, Registration{Handle: "tput", PE: testPE(uint32(i + 1))})
			}
			n.srv.core.Drain()
			n.srv.mu.Unlock()
			req, err := Encode(HandleResolution{Handle: "tput", MaxItems: 3})
			if err != nil {
				b.Fatal(err)
			}
			conns := make([]*rpc, tc.conns)
			for i := range conns {
				conns[i] = dialRPC(b, n.srv.ASAPAddr().String())
				defer conns[i].conn.Close()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			per := b.N / tc.conns
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			var wg sync.WaitGroup
			errs := make(chan error, tc.conns)
			for _, r := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					inflight := 0
					for sent, got := 0, 0; got < per; {
						for inflight < tc.outstanding && sent < per {
							if err := r.conn.WriteMessage(ctx, req); err != nil {
								errs <- err
								return
							}
							sent++
							inflight++
						}
						ans, err := r.conn.ReadMessage(ctx)
						if err != nil {
							errs <- err
							return
						}
						if wire.Type(ans[0]) != wire.ASAPHandleResolutionResponse {
							b.Errorf("answer type %d", ans[0])
							return
						}
						got++
						inflight--
					}
				}()
			}
			wg.Wait()
			cpu := cpuTime() - cpu0
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(per*tc.conns), "cpu-µs/op")
		})
	}
}
