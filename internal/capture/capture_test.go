package capture_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/rspxdp/rspxdp/internal/capture"
	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/wire"
	"github.com/rspxdp/rspxdp/wire/wiretest"
)

var (
	pe1 = netip.MustParseAddr("192.0.2.1")
	reg = netip.MustParseAddr("192.0.2.2")
)

func dataChunk(flags byte, tsn uint32, stream uint16, ppid uint32, data []byte) []byte {
	n := 16 + len(data)
	c := []byte{0, flags, byte(n >> 8), byte(n)}
	c = binary.BigEndian.AppendUint32(c, tsn)
	c = binary.BigEndian.AppendUint16(c, stream)
	c = binary.BigEndian.AppendUint16(c, 0)
	c = binary.BigEndian.AppendUint32(c, ppid)
	c = append(c, data...)
	for len(c)%4 != 0 {
		c = append(c, 0)
	}
	return c
}

func sctpPacket(sport, dport uint16, chunks ...[]byte) []byte {
	p := make([]byte, 12)
	binary.BigEndian.PutUint16(p, sport)
	binary.BigEndian.PutUint16(p[2:], dport)
	for _, c := range chunks {
		p = append(p, c...)
	}
	return wiretest.IPv4Packet(pe1, reg, 132, p)
}

// scenario returns IPv4 packets covering every way a message reaches the
// reader, and the payloads expected, in order.
func scenario(t *testing.T) (pkts [][]byte, want []capture.Message) {
	msgs := wiretest.Messages()
	enc := wiretest.Encode(msgs)
	asap1, asap2, asap3 := enc[0], enc[1], enc[6] // Registration, Deregistration, big HR response
	enrp1 := enc[15]                              // Presence
	expect := func(tr capture.Transport, p wire.Protocol, b []byte) {
		want = append(want, capture.Message{Transport: tr, Protocol: p, Payload: b})
	}
	// Bundle: a SACK chunk, two DATA chunks of our PPIDs, one of another.
	sack := []byte{3, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}
	pkts = append(pkts, sctpPacket(40000, 3863, sack,
		dataChunk(3, 1, 0, wire.PPIDASAP, asap1),
		dataChunk(3, 2, 1, 99, []byte("not rserpool")),
		dataChunk(3, 3, 2, wire.PPIDENRP, enrp1)))
	expect(capture.SCTP, wire.ASAP, asap1)
	expect(capture.SCTP, wire.ENRP, enrp1)
	// A user message fragmented over three packets.
	third := len(asap3) / 3
	pkts = append(pkts,
		sctpPacket(40000, 3863, dataChunk(2, 4, 0, wire.PPIDASAP, asap3[:third])),
		sctpPacket(40000, 3863, dataChunk(0, 5, 0, wire.PPIDASAP, asap3[third:2*third])),
		sctpPacket(40000, 3863, dataChunk(1, 6, 0, wire.PPIDASAP, asap3[2*third:])))
	expect(capture.SCTP, wire.ASAP, asap3)
	// UDP both ways.
	pkts = append(pkts, wiretest.UDPPacket(pe1, reg, 50000, wire.PortASAP, asap2))
	expect(capture.UDP, wire.ASAP, asap2)
	pkts = append(pkts, wiretest.UDPPacket(reg, pe1, wire.PortENRP, 50001, enrp1))
	expect(capture.UDP, wire.ENRP, enrp1)
	// TCP: the first message split over two segments, the next two
	// messages in one segment that arrives before its predecessor, and a
	// retransmission.
	const isn = 1000
	stream := append(append(append([]byte(nil), asap1...), asap2...), asap3...)
	cut1, cut2 := 10, len(asap1)
	pkts = append(pkts,
		wiretest.TCPPacket(pe1, reg, 45000, wire.PortASAP, isn, 0x02, nil),
		wiretest.TCPPacket(pe1, reg, 45000, wire.PortASAP, isn+1, 0x18, stream[:cut1]),
		wiretest.TCPPacket(pe1, reg, 45000, wire.PortASAP, isn+1+uint32(cut2), 0x18, stream[cut2:]),
		wiretest.TCPPacket(pe1, reg, 45000, wire.PortASAP, isn+1+uint32(cut1), 0x18, stream[cut1:cut2]),
		wiretest.TCPPacket(pe1, reg, 45000, wire.PortASAP, isn+1, 0x18, stream[:cut2]),
		wiretest.TCPPacket(pe1, reg, 45000, wire.PortASAP, isn+1+uint32(len(stream)), 0x11, nil))
	expect(capture.TCP, wire.ASAP, asap1)
	expect(capture.TCP, wire.ASAP, asap2)
	expect(capture.TCP, wire.ASAP, asap3)
	// TCP garbage on the ENRP port is reported, not framed.
	pkts = append(pkts,
		wiretest.TCPPacket(pe1, reg, 45001, wire.PortENRP, 5, 0x02, nil),
		wiretest.TCPPacket(pe1, reg, 45001, wire.PortENRP, 6, 0x18, []byte("GET / HTTP/1.0\r\n\r\n")))
	want = append(want, capture.Message{Transport: capture.TCP, Protocol: wire.ENRP, Payload: []byte("GET / HTTP/1.0\r\n\r\n"), Err: errors.New("unframeable")})
	// Unrelated traffic.
	pkts = append(pkts, wiretest.UDPPacket(pe1, reg, 53, 53, []byte("dns")))
	return pkts, want
}

func frame(link layers.LinkType, ip []byte) []byte {
	switch link {
	case layers.LinkTypeEthernet:
		return append([]byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00}, ip...)
	case layers.LinkTypeLinuxSLL:
		return append([]byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00}, ip...)
	case layers.LinkTypeLinuxSLL2:
		return append([]byte{0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0}, ip...)
	case layers.LinkTypeNull:
		return append([]byte{2, 0, 0, 0}, ip...)
	}
	return ip
}

func TestReaderLinkTypes(t *testing.T) {
	for _, link := range []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL,
		layers.LinkTypeLinuxSLL2, layers.LinkTypeRaw, layers.LinkTypeNull} {
		for _, ng := range []bool{false, true} {
			name := link.String()
			if ng {
				name += "/pcapng"
			}
			t.Run(name, func(t *testing.T) {
				pkts, want := scenario(t)
				var buf bytes.Buffer
				start := time.Unix(1700000000, 0).UTC()
				ci := func(i int, data []byte) gopacket.CaptureInfo {
					return gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * time.Millisecond),
						CaptureLength: len(data), Length: len(data)}
				}
				if ng {
					w, err := pcapgo.NewNgWriter(&buf, link)
					if err != nil {
						t.Fatal(err)
					}
					for i, p := range pkts {
						if err := w.WritePacket(ci(i, frame(link, p)), frame(link, p)); err != nil {
							t.Fatal(err)
						}
					}
					if err := w.Flush(); err != nil {
						t.Fatal(err)
					}
				} else {
					w := pcapgo.NewWriter(&buf)
					if err := w.WriteFileHeader(65535, link); err != nil {
						t.Fatal(err)
					}
					for i, p := range pkts {
						if err := w.WritePacket(ci(i, frame(link, p)), frame(link, p)); err != nil {
							t.Fatal(err)
						}
					}
				}
				checkRead(t, &buf, want)
			})
		}
	}
}

func checkRead(t *testing.T, buf *bytes.Buffer, want []capture.Message) {
	t.Helper()
	r, err := capture.NewReader(buf)
	if err != nil {
		t.Fatal(err)
	}
	var got []capture.Message
	for {
		m, err := r.Next()
		if err != nil {
			break
		}
		got = append(got, m)
	}
	if len(got) != len(want) {
		for _, g := range got {
			t.Logf("got %v %v %d bytes err=%v", g.Transport, g.Protocol, len(g.Payload), g.Err)
		}
		t.Fatalf("%d messages, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Transport != w.Transport || g.Protocol != w.Protocol || !bytes.Equal(g.Payload, w.Payload) || (g.Err != nil) != (w.Err != nil) {
			t.Errorf("message %d: got %v %v %d bytes err=%v, want %v %v %d bytes err=%v", i,
				g.Transport, g.Protocol, len(g.Payload), g.Err, w.Transport, w.Protocol, len(w.Payload), w.Err)
		}
		if g.Src.Port() == 0 || g.Dst.Port() == 0 || !g.Src.Addr().IsValid() || g.Time.IsZero() || g.Frame == 0 {
			t.Errorf("message %d: incomplete metadata %+v", i, g)
		}
	}
}

func TestReadFileRsplib(t *testing.T) {
	path := testenv.SharedFixture(t, "rsplib-3.4.4-rfc.pcap")
	msgs, err := capture.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	by := map[capture.Transport]int{}
	for _, m := range msgs {
		by[m.Transport]++
		if m.Err != nil {
			t.Errorf("frame %d: %v", m.Frame, m.Err)
		}
	}
	t.Logf("%d messages: %v", len(msgs), by)
	// tshark counts 2233 ASAP/ENRP messages in this capture.
	if len(msgs) != 2233 || by[capture.SCTP] == 0 || by[capture.UDP] == 0 {
		t.Errorf("got %d messages (%v), want 2233 over SCTP and UDP", len(msgs), by)
	}
}

func TestReaderRejects(t *testing.T) {
	if _, err := capture.NewReader(bytes.NewReader([]byte("not a pcap at all"))); err == nil {
		t.Error("garbage accepted as a capture")
	}
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	_ = w.WriteFileHeader(65535, layers.LinkTypeIEEE802_11)
	if _, err := capture.NewReader(&buf); err == nil {
		t.Error("802.11 link type accepted")
	}
	if _, err := capture.ReadFile(filepath.Join(t.TempDir(), "missing.pcap")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
