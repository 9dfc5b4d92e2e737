package capture_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/rspxdp/rspxdp/internal/capture"
)

// FuzzReader feeds arbitrary packets of each supported link type to the
// reader: it must neither panic nor loop, whatever the packets hold.
func FuzzReader(f *testing.F) {
	pkts, _ := scenario(nil)
	for _, p := range pkts {
		f.Add(uint8(0), p)
	}
	links := []layers.LinkType{layers.LinkTypeRaw, layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL,
		layers.LinkTypeLinuxSLL2, layers.LinkTypeNull}
	f.Fuzz(func(t *testing.T, link uint8, data []byte) {
		lt := links[int(link)%len(links)]
		var buf bytes.Buffer
		w := pcapgo.NewWriter(&buf)
		if err := w.WriteFileHeader(65535, lt); err != nil {
			t.Fatal(err)
		}
		// The same packet twice exercises TCP and SCTP state.
		for i := 0; i < 2; i++ {
			pkt := frame(lt, data)
			if err := w.WritePacket(gopacket.CaptureInfo{CaptureLength: len(pkt), Length: len(pkt)}, pkt); err != nil {
				t.Fatal(err)
			}
		}
		r, err := capture.NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; ; n++ {
			if n > 2*len(data)+4 {
				t.Fatalf("more messages than bytes")
			}
			if _, err := r.Next(); errors.Is(err, io.EOF) {
				return
			} else if err != nil {
				t.Fatal(err)
			}
		}
	})
}
