// Package wire is rspxdp's codec for the Reliable Server Pooling messages:
// ASAP (RFC 5352) and ENRP (RFC 5353) with the shared parameters of RFC 5354
// and the member selection policies of RFC 5356, plus the extensions rsplib
// (the reference implementation) puts on the wire: the Priority policy,
// rsplib's extended policy families and the Handle Resolution option.
//
// Every message has the same common header (type, flags, length) followed,
// for ENRP, by the sender's and receiver's server identifiers and then by a
// list of TLV parameters padded to four bytes. One [Message] type carries
// both protocols; its [Message.Params] keep the parameters in wire order so
// that a decoded message encodes back to the very same bytes, including
// parameters this package does not know (kept opaque when their action bits
// say "skip").
//
// Decoding is defensive: it never panics and never allocates more than the
// message itself could justify. A [Decoder] bounds the message size and the
// nesting depth; every failure is a [*DecodeError] naming the field that was
// wrong. Decoding into a reused [Message] reuses its storage, so a hot loop
// decoding Registrations does not allocate.
package wire
