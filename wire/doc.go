// Package wire is rspxdp's codec for the Reliable Server Pooling messages:
// ASAP (RFC 5352) and ENRP (RFC 5353) with the shared parameters of RFC 5354
// and the member selection policies of RFC 5356, plus the extensions rsplib
// (the reference implementation) puts on the wire: the Priority policy,
// rsplib's extended policy families and the Handle Resolution option.
//
// Every message has the same common header (type, flags, length) followed,
// for ENRP, by the sender's and receiver's server identifiers and then by a
// list of TLV parameters padded to four bytes. One [Message] type carries
// both protocols; its [Message.Params] keep the parameters in wire order.
// Composite parameters decode into typed structs ([PoolElement],
// [Transport], [Policy], [ServerInfo], [Cause]); accessors such as
// [Message.PoolHandle], [Message.PoolElement] and [Message.Pools] find them.
//
// # Byte-exact re-encoding
//
// A decoded message encodes back to the bytes it came from, which the tests
// check against every message of a capture of rsplib. Unknown parameters
// whose action bits say "skip" are kept opaque ([Param.Raw]) and so are
// policies of unknown types or unexpected value lengths ([Policy.Opaque]).
// What is not preserved: non-zero padding bytes, action bits set on the
// address and policy parameters nested in a Pool Element or transport, and
// the position of unexpected nested parameters (kept in Extra, re-encoded
// after the known ones). Decoding the re-encoded bytes gives the same
// Message again.
//
// # Limits
//
// Decoding never panics and allocates no more than the message justifies. A
// [Decoder] bounds the message size and the nesting depth (error causes may
// carry whole messages, which may carry error causes...). Every failure is
// a [*DecodeError] naming the field that was wrong, with one of the
// sentinel errors ([ErrTruncated], [ErrBadLength], [ErrTooLarge],
// [ErrTooDeep], [ErrUnknownMessage], [ErrUnknownParam], [ErrBadValue]).
//
// Decoding into a reused [Message] reuses its storage: a hot loop decoding
// Registrations does not allocate. The decoded slices belong to the Message
// and are overwritten by the next decode into it.
//
// Package wire/wiretest has sample messages of every type and a pcap
// writer, for tests of packages that use this one.
package wire
