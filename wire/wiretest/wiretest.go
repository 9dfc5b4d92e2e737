// Package wiretest provides sample ASAP and ENRP messages of every type and
// a pcap writer for them, for tests of the codec and of the tools that read
// captures (rspxdp decode, tshark cross-checks).
package wiretest

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/rspxdp/rspxdp/wire"
)

// Values the samples carry, for tests that read them back.
const (
	PoolHandle = "rspxdp-sample-pool"
	PEID       = 0x0badcafe
	ServerID   = 0x5eed0001
	PeerID     = 0x5eed0002
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// PE returns a sample pool element with the given id, policy and user
// transport kind (an IPv4 and an IPv6 address).
func PE(id uint32, pol wire.Policy, kind wire.ParamType) wire.PoolElement {
	tr := wire.Transport{
		Kind:  kind,
		Port:  uint16(7000 + id%1000),
		Addrs: []netip.Addr{addr("192.0.2.10"), addr("2001:db8::10")},
	}
	if kind == wire.ParamSCTPTransport || kind == wire.ParamTCPTransport {
		tr.Use = wire.UseDataPlusControl
	}
	if kind == wire.ParamDCCPTransport {
		tr.ServiceCode = 42
	}
	return wire.PoolElement{
		ID:            id,
		HomeRegistrar: ServerID,
		Lifetime:      300000,
		UserTransport: tr,
		Policy:        pol,
		ASAPTransport: wire.Transport{
			Kind:  wire.ParamSCTPTransport,
			Port:  50000,
			Addrs: []netip.Addr{addr("192.0.2.10")},
		},
	}
}

// Policy returns a sample policy of type t with distinct values.
func Policy(t wire.PolicyType) wire.Policy {
	return wire.Policy{Type: t, Weight: 3, Priority: 2, Load: 0x40000000, LoadDegradation: 0x01000000,
		LoadDPF: 0x10000000, WeightDPF: 0x20000000, Distance: 17}
}

func serverInfo(id uint32) wire.ServerInfo {
	return wire.ServerInfo{ID: id, Transport: wire.Transport{
		Kind: wire.ParamSCTPTransport, Port: wire.PortENRP, Addrs: []netip.Addr{addr("198.51.100.1")},
	}}
}

// Messages returns at least one message of every ASAP and ENRP type; the
// set as a whole uses every parameter type, transport kind, known policy
// type and error cause code, flags, and an unknown parameter to be skipped.
func Messages() []*wire.Message {
	ph := wire.PoolHandleParam([]byte(PoolHandle))
	pe := PE(PEID, wire.Policy{Type: wire.PolicyWeightedRoundRobin, Weight: 5}, wire.ParamSCTPTransport)
	asap := func(t wire.Type, f wire.Flags, ps ...wire.Param) *wire.Message {
		return &wire.Message{Protocol: wire.ASAP, Type: t, Flags: f, Params: ps}
	}
	enrp := func(t wire.Type, f wire.Flags, ps ...wire.Param) *wire.Message {
		return &wire.Message{Protocol: wire.ENRP, Type: t, Flags: f, SenderID: ServerID, ReceiverID: PeerID, Params: ps}
	}
	// Every policy type and transport kind, spread over PEs.
	var pes []wire.Param
	kinds := []wire.ParamType{wire.ParamSCTPTransport, wire.ParamTCPTransport, wire.ParamUDPTransport,
		wire.ParamUDPLiteTransport, wire.ParamDCCPTransport}
	for i, pt := range wire.PolicyTypes() {
		pes = append(pes, wire.PoolElementParam(PE(PEID+uint32(i)+1, Policy(pt), kinds[i%len(kinds)])))
	}
	opaquePolicy := PE(PEID+100, wire.Policy{Type: 0xdead0001, Opaque: []byte{1, 2, 3, 4, 5, 6, 7, 8}}, wire.ParamTCPTransport)

	badParam, _ := wire.AppendParam(nil, &wire.Param{Type: 0x4123, Raw: []byte{9, 9}})
	unrecognizedMsg, _ := (&wire.Message{Protocol: wire.ASAP, Type: wire.ASAPHandleResolution, Params: []wire.Param{ph}}).MarshalBinary()
	invalid, _ := wire.AppendParam(nil, &wire.Param{Type: wire.ParamPEIdentifier, PEID: 0})
	pol, _ := wire.AppendParam(nil, &wire.Param{Type: wire.ParamPolicy, Policy: wire.Policy{Type: wire.PolicyRandom}})
	tr, _ := wire.AppendParam(nil, &wire.Param{Type: wire.ParamUDPTransport, Transport: wire.Transport{Kind: wire.ParamUDPTransport, Port: 9, Addrs: []netip.Addr{addr("192.0.2.1")}}})
	allCauses := wire.ErrorParam(
		wire.Cause{Code: wire.CauseUnrecognizedParameter, Info: badParam},
		wire.Cause{Code: wire.CauseUnrecognizedMessage, Info: unrecognizedMsg},
		wire.Cause{Code: wire.CauseInvalidValues, Info: invalid},
		wire.Cause{Code: wire.CauseNonUniquePEIdentifier},
		wire.Cause{Code: wire.CauseInconsistentPolicy, Info: pol},
		wire.Cause{Code: wire.CauseLackOfResources},
		wire.Cause{Code: wire.CauseInconsistentTransport, Info: tr},
		wire.Cause{Code: wire.CauseInconsistentDataControl},
		wire.Cause{Code: wire.CauseUnknownPoolHandle},
		wire.Cause{Code: wire.CauseRejectedSecurity},
		wire.Cause{Code: 0x11, Info: []byte("vendor")},
	)

	msgs := []*wire.Message{
		asap(wire.ASAPRegistration, 0, ph, wire.PoolElementParam(pe)),
		asap(wire.ASAPDeregistration, 0, ph, wire.PEIDParam(PEID)),
		asap(wire.ASAPRegistrationResponse, 0, ph, wire.PEIDParam(PEID)),
		asap(wire.ASAPRegistrationResponse, wire.FlagReject, ph, wire.PEIDParam(PEID),
			wire.ErrorParam(wire.Cause{Code: wire.CauseRejectedSecurity})),
		asap(wire.ASAPDeregistrationResponse, 0, ph, wire.PEIDParam(PEID)),
		asap(wire.ASAPHandleResolution, 0, ph, wire.HandleResolutionParam(16)),
		asap(wire.ASAPHandleResolutionResponse, 0, append([]wire.Param{ph,
			wire.PolicyParam(wire.Policy{Type: wire.PolicyLeastUsed, Load: 1234})}, pes...)...),
		{Protocol: wire.ASAP, Type: wire.ASAPEndpointKeepAlive, Flags: wire.FlagHome, ServerID: ServerID,
			Params: []wire.Param{ph, wire.PEIDParam(PEID)}},
		asap(wire.ASAPEndpointKeepAliveAck, 0, ph, wire.PEIDParam(PEID)),
		asap(wire.ASAPEndpointUnreachable, 0, ph, wire.PEIDParam(PEID)),
		{Protocol: wire.ASAP, Type: wire.ASAPServerAnnounce, ServerID: ServerID, Params: []wire.Param{
			wire.TransportParam(serverInfo(ServerID).Transport),
			wire.TransportParam(wire.Transport{Kind: wire.ParamTCPTransport, Port: wire.PortASAP, Use: wire.UseDataPlusControl, Addrs: []netip.Addr{addr("198.51.100.1")}}),
		}},
		asap(wire.ASAPCookie, 0, wire.CookieParam([]byte("cookie-state-0123"))),
		asap(wire.ASAPCookieEcho, 0, wire.CookieParam([]byte("cookie-state-0123"))),
		asap(wire.ASAPBusinessCard, 0, ph, wire.PoolElementParam(pe), wire.PoolElementParam(opaquePolicy),
			wire.Param{Type: 0x8123, Raw: []byte("skip me")}, wire.Param{Type: 0xc124, Raw: []byte{1}}),
		asap(wire.ASAPError, 0, allCauses),

		enrp(wire.ENRPPresence, wire.FlagReplyRequired, wire.ChecksumParam(0xbeef), wire.ServerInfoParam(serverInfo(ServerID))),
		enrp(wire.ENRPHandleTableRequest, wire.FlagOwnChildrenOnly),
		enrp(wire.ENRPHandleTableResponse, wire.FlagMoreToSend, ph, wire.PoolElementParam(pe),
			wire.PoolHandleParam([]byte("other-pool")), pes[0], pes[1]),
		{Protocol: wire.ENRP, Type: wire.ENRPHandleUpdate, Flags: wire.FlagTakeover, SenderID: ServerID, ReceiverID: PeerID,
			Action: wire.UpdateAddPE, Params: []wire.Param{ph, wire.PoolElementParam(pe)}},
		{Protocol: wire.ENRP, Type: wire.ENRPHandleUpdate, SenderID: ServerID, ReceiverID: PeerID,
			Action: wire.UpdateDelPE, Params: []wire.Param{ph, wire.PoolElementParam(pe)}},
		enrp(wire.ENRPListRequest, 0),
		enrp(wire.ENRPListResponse, 0, wire.ServerInfoParam(serverInfo(ServerID)), wire.ServerInfoParam(serverInfo(PeerID))),
		{Protocol: wire.ENRP, Type: wire.ENRPInitTakeover, SenderID: ServerID, ReceiverID: PeerID, TargetID: 0x5eed0003},
		{Protocol: wire.ENRP, Type: wire.ENRPInitTakeoverAck, SenderID: PeerID, ReceiverID: ServerID, TargetID: 0x5eed0003},
		{Protocol: wire.ENRP, Type: wire.ENRPTakeoverServer, SenderID: ServerID, ReceiverID: 0, TargetID: 0x5eed0003},
		enrp(wire.ENRPError, 0, allCauses),
	}
	return msgs
}

// Encode marshals msgs, panicking on error (the samples are valid).
func Encode(msgs []*wire.Message) [][]byte {
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		b, err := m.MarshalBinary()
		if err != nil {
			panic(fmt.Sprintf("sample %d (%s %s): %v", i, m.Protocol, m.TypeName(), err))
		}
		out[i] = b
	}
	return out
}

// WriteSCTPPcap writes one raw-IPv4 packet per message to w, each an SCTP
// packet with one DATA chunk (PPID 11 for ASAP, 12 for ENRP) from
// 192.0.2.1 to 192.0.2.2, one second apart from start.
func WriteSCTPPcap(w io.Writer, msgs []*wire.Message, start time.Time) error {
	ps := make([]Payload, len(msgs))
	for i, m := range msgs {
		b, err := m.MarshalBinary()
		if err != nil {
			return err
		}
		ps[i] = Payload{Protocol: m.Protocol, Bytes: b}
	}
	return WriteSCTPPcapPayloads(w, ps, start)
}

// Payload is a message's bytes, possibly deliberately broken, with the
// protocol whose PPID and port carry it.
type Payload struct {
	Protocol wire.Protocol
	Bytes    []byte
}

// WriteSCTPPcapPayloads is WriteSCTPPcap for raw payloads.
func WriteSCTPPcapPayloads(w io.Writer, ps []Payload, start time.Time) error {
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		return err
	}
	for i, m := range ps {
		payload := m.Bytes
		ppid, port := uint32(wire.PPIDASAP), uint16(wire.PortASAP)
		if m.Protocol == wire.ENRP {
			ppid, port = wire.PPIDENRP, wire.PortENRP
		}
		pkt := SCTPPacket(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), 40000, port,
			uint32(i+1), ppid, payload)
		ts := start.Add(time.Duration(i) * time.Second)
		if err := pw.WritePacket(captureInfo(ts, len(pkt)), pkt); err != nil {
			return err
		}
	}
	return nil
}

// SCTPPacket builds an IPv4 packet holding an SCTP packet with one
// unfragmented DATA chunk carrying payload.
func SCTPPacket(src, dst netip.Addr, sport, dport uint16, tsn, ppid uint32, payload []byte) []byte {
	chunkLen := 16 + len(payload)
	sctp := make([]byte, 12, 12+chunkLen+3)
	binary.BigEndian.PutUint16(sctp[0:], sport)
	binary.BigEndian.PutUint16(sctp[2:], dport)
	binary.BigEndian.PutUint32(sctp[4:], 0x01020304) // verification tag
	sctp = append(sctp, 0, 0x03, byte(chunkLen>>8), byte(chunkLen))
	sctp = binary.BigEndian.AppendUint32(sctp, tsn)
	sctp = binary.BigEndian.AppendUint16(sctp, 0)           // stream
	sctp = binary.BigEndian.AppendUint16(sctp, uint16(tsn)) // stream sequence
	sctp = binary.BigEndian.AppendUint32(sctp, ppid)
	sctp = append(sctp, payload...)
	for len(sctp)%4 != 0 {
		sctp = append(sctp, 0)
	}
	// SCTP's CRC32c is stored in little-endian byte order (RFC 9260 B).
	binary.LittleEndian.PutUint32(sctp[8:], crc32.Checksum(sctp, crc32.MakeTable(crc32.Castagnoli)))
	return IPv4Packet(src, dst, 132, sctp)
}

// UDPPacket builds an IPv4 packet holding a UDP datagram (checksum 0).
func UDPPacket(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	udp := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	return IPv4Packet(src, dst, 17, append(udp, payload...))
}

// IPv4Packet wraps payload in an IPv4 header with a valid checksum.
func IPv4Packet(src, dst netip.Addr, proto byte, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	h[8] = 64
	h[9] = proto
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
	return append(h, payload...)
}

// TCPPacket builds an IPv4 packet holding a TCP segment (checksum 0) with
// the given flags (layers-style bits: 0x02 SYN, 0x10 ACK, 0x01 FIN).
func TCPPacket(src, dst netip.Addr, sport, dport uint16, seq uint32, flags byte, payload []byte) []byte {
	tcp := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12] = 5 << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	return IPv4Packet(src, dst, 6, append(tcp, payload...))
}
