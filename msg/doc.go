// Package msg holds the ASAP (RFC 5352) and ENRP (RFC 5353) messages as
// typed values, and their codec to and from package wire.
//
// The registrar (package enrp) and the client library (package asap) both
// speak in these values, not in bytes: the registrar's core stays free of
// encoding, so every protocol exchange is testable as plain values, and a
// PE or PU links no registrar code.
//
// Encode, Decode, ToWire and FromWire map the messages to package wire;
// they are the only place that knows which parameters each message
// carries.
package msg
