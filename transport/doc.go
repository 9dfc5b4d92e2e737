// Package transport moves whole ASAP and ENRP messages between rspxdp
// nodes, PEs and PUs, without looking inside them (the codec is package
// wire). It needs only the common header every RSerPool message starts with:
//
//	byte 0     message type
//	byte 1     flags
//	bytes 2-3  length of the whole message, header included, big endian
//
// Protocol code talks to the Transport, Listener and Conn interfaces; which
// wire carries the messages is configuration:
//
//   - SCTP ([NewSCTP]), as RFC 5352/5353 define: one-to-one style sockets
//     (one association per socket, accept/connect like TCP), chosen over
//     one-to-many because every RSerPool peering is a long-lived
//     association with its own state, a socket per association gives each
//     its own deadlines, back-pressure and close, and a stuck peer cannot
//     block a shared socket. Every message is sent with PPID 11 (ASAP) or
//     12 (ENRP); a message received with another PPID closes the
//     association. The kernel keeps message boundaries; the header length
//     must equal the message size. A kernel without SCTP is refused with
//     [ErrSCTPUnsupported]. With [Config.DialFromListener] (the ENRP
//     server sets it) an outgoing association leaves from the listener's
//     address and port, shared through SO_REUSEPORT: rsplib accepts an
//     ENRP Presence only from the port it advertises.
//
//   - TCP ([NewTCP]): rspxdp's TCP mapping. The RFCs define none, so this
//     is ours: each message is sent as it is, framed by its own header's
//     length field, with nothing added; one message per write() and
//     TCP_NODELAY, so a message usually travels in one segment (which is
//     also what Wireshark's ASAP-over-TCP dissector expects on port 3863).
//     The receiver reads the 4-byte header, checks the length (at least 4,
//     at most the configured maximum, 65535 by default) and reads the rest.
//     Default ports are the protocols' registered ones: ASAP 3863, ENRP 9901.
//
//   - TLS over TCP ([NewTLS]): the same framing inside a TLS stream (TLS 1.3
//     unless configured otherwise). The peer's verified certificate chain is
//     available from [Conn.Peer] for authorisation decisions.
//
//   - UDP ([AnnounceSender], [AnnounceReceiver]) for ENRP and ASAP server
//     announces only, one message per datagram, to unicast peers and/or the
//     multicast groups rsplib uses (ASAP 239.0.0.50:3863, ENRP
//     239.0.0.51:9901; see [Protocol.AnnounceGroup]).
//
// # Misbehaving peers
//
// A stream peer that sends a length below 4 ([ErrBadLength]), above the
// maximum ([ErrOversized]), closes inside a frame ([ErrTruncated]), or
// sends the first bytes of a frame and not the rest within
// [Config.FrameTimeout] ([ErrStalled]) has its connection closed; the
// reason is logged with log/slog and ReadMessage returns a [*FrameError]
// wrapping the sentinel. Listeners are not affected: each Conn fails alone.
// Silence between messages is normal (ASAP associations are long-lived);
// set [Config.IdleTimeout] to close quiet connections ([ErrIdle]).
//
// Every call that can block takes a context.Context and also honours the
// configured timeouts.
package transport
