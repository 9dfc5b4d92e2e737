// Package capture pulls ASAP and ENRP messages out of packet captures:
// SCTP DATA chunks with PPID 11/12 (several may be bundled in one packet,
// fragmented user messages are reassembled), UDP datagrams to or from ports
// 3863/9901, and TCP streams on those ports, reassembled per direction and
// framed by the length in each message's common header.
//
// It reads pcap and pcapng files (github.com/gopacket/gopacket/pcapgo) with
// Ethernet, Linux cooked (SLL, SLL2), raw IP and BSD loopback link types.
package capture

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/rspxdp/rspxdp/wire"
)

// Transport is the transport a message was carried on.
type Transport uint8

// Transports.
const (
	SCTP Transport = iota + 1
	UDP
	TCP
)

// String returns "SCTP", "UDP" or "TCP".
func (t Transport) String() string {
	switch t {
	case SCTP:
		return "SCTP"
	case UDP:
		return "UDP"
	case TCP:
		return "TCP"
	}
	return fmt.Sprintf("Transport(%d)", uint8(t))
}

// Message is one ASAP or ENRP message found in a capture.
type Message struct {
	// Frame is the 1-based number of the packet that completed the message.
	Frame     int
	Time      time.Time
	Src, Dst  netip.AddrPort
	Transport Transport
	Protocol  wire.Protocol
	// PPID and Stream are the SCTP payload protocol identifier and stream.
	PPID   uint32
	Stream uint16
	// Payload is the message's bytes (owned by the Message).
	Payload []byte
	// Err, when set, reports bytes of a TCP stream that could not be
	// framed as messages (Payload holds the discarded bytes).
	Err error
}

// Limits on reassembly state, so a hostile capture cannot grow memory
// without bound.
const (
	maxStreamBuffer  = 1 << 20 // bytes buffered per TCP direction
	maxPendingSegs   = 256     // out-of-order TCP segments per direction
	maxSCTPFragments = 1 << 20 // bytes of a fragmented SCTP user message
	maxFlows         = 4096    // TCP directions / SCTP streams tracked
)

// packetSource is what pcapgo's pcap and pcapng readers have in common.
type packetSource interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	LinkType() layers.LinkType
}

// Reader yields the messages of a capture in packet order.
type Reader struct {
	src   packetSource
	frame int
	queue []Message
	tcp   map[flowKey]*tcpStream
	frags map[fragKey]*bytes.Buffer
	link  layers.LinkType
}

type flowKey struct{ src, dst netip.AddrPort }

type fragKey struct {
	src, dst netip.AddrPort
	stream   uint16
}

// NewReader reads a pcap or pcapng stream.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("read capture header: %w", err)
	}
	var src packetSource
	if binary.LittleEndian.Uint32(magic) == 0x0a0d0d0a {
		src, err = pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
	} else {
		src, err = pcapgo.NewReader(br)
	}
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	switch lt := src.LinkType(); lt {
	case layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2,
		layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, layers.LinkTypeNull, layers.LinkTypeLoop:
	case 12, 14: // raw IP as numbered on some BSDs
	default:
		return nil, fmt.Errorf("open capture: unsupported link type %v", lt)
	}
	return &Reader{
		src:   src,
		tcp:   make(map[flowKey]*tcpStream),
		frags: make(map[fragKey]*bytes.Buffer),
		link:  src.LinkType(),
	}, nil
}

// ReadFile returns every ASAP and ENRP message in the capture file at path.
func ReadFile(path string) ([]Message, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []Message
	for {
		m, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, m)
	}
}

// Next returns the next message, or io.EOF after the last one. Packets that
// are not ASAP or ENRP, or that cannot be parsed, are skipped. A capture cut
// in the middle of a packet (tcpdump killed, a full disk) ends with an error
// wrapping io.ErrUnexpectedEOF after the last whole packet's messages, so
// the caller can tell it from a complete file.
func (r *Reader) Next() (Message, error) {
	for len(r.queue) == 0 {
		data, ci, err := r.src.ReadPacketData()
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return Message{}, fmt.Errorf("packet %d cut short: %w", r.frame+1, io.ErrUnexpectedEOF)
			}
			if errors.Is(err, io.EOF) {
				return Message{}, io.EOF
			}
			return Message{}, fmt.Errorf("packet %d: %w", r.frame+1, err)
		}
		r.frame++
		r.packet(data, ci.Timestamp)
	}
	m := r.queue[0]
	r.queue = r.queue[1:]
	return m, nil
}

func (r *Reader) linkDecoder() gopacket.Decoder {
	switch r.link {
	case 12, 14, layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6:
		return gopacket.DecodeFunc(decodeRawIP)
	}
	return r.link
}

// decodeRawIP picks IPv4 or IPv6 by the version nibble.
func decodeRawIP(data []byte, p gopacket.PacketBuilder) error {
	if len(data) == 0 {
		return errors.New("empty packet")
	}
	if data[0]>>4 == 6 {
		return layers.LayerTypeIPv6.Decode(data, p)
	}
	return layers.LayerTypeIPv4.Decode(data, p)
}

func (r *Reader) packet(data []byte, ts time.Time) {
	pkt := gopacket.NewPacket(data, r.linkDecoder(), gopacket.DecodeOptions{Lazy: true, NoCopy: true})
	var srcIP, dstIP netip.Addr
	switch ip := pkt.NetworkLayer().(type) {
	case *layers.IPv4:
		if ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
			return // IP fragments are not reassembled
		}
		srcIP, _ = netip.AddrFromSlice(ip.SrcIP.To4())
		dstIP, _ = netip.AddrFromSlice(ip.DstIP.To4())
	case *layers.IPv6:
		srcIP, _ = netip.AddrFromSlice(ip.SrcIP)
		dstIP, _ = netip.AddrFromSlice(ip.DstIP)
	default:
		return
	}
	base := Message{Frame: r.frame, Time: ts}
	switch tl := pkt.TransportLayer().(type) {
	case *layers.SCTP:
		base.Src = netip.AddrPortFrom(srcIP, uint16(tl.SrcPort))
		base.Dst = netip.AddrPortFrom(dstIP, uint16(tl.DstPort))
		base.Transport = SCTP
		r.sctpChunks(base, tl.LayerPayload())
	case *layers.UDP:
		base.Src = netip.AddrPortFrom(srcIP, uint16(tl.SrcPort))
		base.Dst = netip.AddrPortFrom(dstIP, uint16(tl.DstPort))
		base.Transport = UDP
		p, ok := portProtocol(base.Src.Port(), base.Dst.Port())
		if !ok || len(tl.Payload) == 0 {
			return
		}
		base.Protocol = p
		base.Payload = bytes.Clone(tl.Payload)
		r.queue = append(r.queue, base)
	case *layers.TCP:
		base.Src = netip.AddrPortFrom(srcIP, uint16(tl.SrcPort))
		base.Dst = netip.AddrPortFrom(dstIP, uint16(tl.DstPort))
		base.Transport = TCP
		p, ok := portProtocol(base.Src.Port(), base.Dst.Port())
		if !ok {
			return
		}
		base.Protocol = p
		r.tcpSegment(base, tl)
	}
}

// portProtocol maps the well-known ports to a protocol, ASAP first: a PE's
// ASAP endpoint talking to a registrar's ENRP port does not occur.
func portProtocol(src, dst uint16) (wire.Protocol, bool) {
	switch {
	case src == wire.PortASAP || dst == wire.PortASAP:
		return wire.ASAP, true
	case src == wire.PortENRP || dst == wire.PortENRP:
		return wire.ENRP, true
	}
	return 0, false
}

// SCTP DATA chunk flags (RFC 9260 section 3.3.1).
const (
	sctpChunkData  = 0
	sctpFlagEnd    = 0x01
	sctpFlagBegin  = 0x02
	sctpDataHeader = 16
)

func (r *Reader) sctpChunks(base Message, b []byte) {
	for len(b) >= 4 {
		typ, flags := b[0], b[1]
		l := int(binary.BigEndian.Uint16(b[2:]))
		if l < 4 || l > len(b) {
			return
		}
		chunk := b[:l]
		padded := (l + 3) &^ 3
		if padded > len(b) {
			padded = len(b)
		}
		b = b[padded:]
		if typ != sctpChunkData || l < sctpDataHeader {
			continue
		}
		stream := binary.BigEndian.Uint16(chunk[8:])
		ppid := binary.BigEndian.Uint32(chunk[12:])
		p, ok := wire.ProtocolForPPID(ppid)
		if !ok {
			continue
		}
		data := chunk[sctpDataHeader:]
		m := base
		m.Protocol, m.PPID, m.Stream = p, ppid, stream
		key := fragKey{base.Src, base.Dst, stream}
		switch {
		case flags&(sctpFlagBegin|sctpFlagEnd) == sctpFlagBegin|sctpFlagEnd:
			m.Payload = bytes.Clone(data)
			r.queue = append(r.queue, m)
		case flags&sctpFlagBegin != 0:
			if len(r.frags) >= maxFlows {
				clear(r.frags)
			}
			buf := new(bytes.Buffer)
			buf.Write(data)
			r.frags[key] = buf
		default:
			buf := r.frags[key]
			if buf == nil {
				continue // middle or end without a beginning
			}
			if buf.Len()+len(data) > maxSCTPFragments {
				delete(r.frags, key)
				continue
			}
			buf.Write(data)
			if flags&sctpFlagEnd != 0 {
				delete(r.frags, key)
				m.Payload = buf.Bytes()
				r.queue = append(r.queue, m)
			}
		}
	}
}
