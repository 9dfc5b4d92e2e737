package bpf_test

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/rspxdp/rspxdp/loader"
)

// FuzzLbFrames feeds arbitrary frames to the balancer. Whatever the bytes,
// the verdict is pass (frame untouched), drop, or transmit of exactly the
// input behind a new outer header (or with new MACs, for the L2 DSR VIP):
// never a rewritten or truncated packet.
func FuzzLbFrames(f *testing.F) {
	for _, b := range readBenchFrames(f) {
		f.Add(b)
	}
	f.Add(frame(f, client4, svcUDP4.VIP, loader.UDP, []byte("x")))
	f.Add(frame(f, client6, svcSCTP6.VIP, loader.SCTP, nil))
	f.Add(frame(f, client4, svcL2.VIP, loader.TCP, nil))
	f.Add(frame(f, netip.MustParseAddrPort("10.200.1.1:80"), client4, loader.TCP, nil)[:40])
	e := newEnv(f, nil)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 14 || len(in) > 1600 {
			return // the kernel refuses shorter frames; longer ones exceed a page
		}
		ret, out := e.run(t, in)
		switch ret {
		case xdpDrop:
		case xdpPass:
			if !bytes.Equal(out, in) {
				t.Fatalf("passed frame was modified")
			}
		case xdpTX:
			switch len(out) - len(in) {
			case 0: // L2 DSR: only the MACs change
				if !bytes.Equal(out[12:], in[12:]) {
					t.Fatalf("L2 DSR changed more than the MACs")
				}
			case 20, 40:
				if !bytes.Equal(out[len(out)-len(in)+14:], in[14:]) {
					t.Fatalf("encapsulated packet differs from the input")
				}
			default:
				t.Fatalf("transmitted frame grew by %d bytes", len(out)-len(in))
			}
		default:
			t.Fatalf("verdict %d", ret)
		}
	})
}
