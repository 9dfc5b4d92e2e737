// Package asap is the pool element and pool user side of RSerPool's
// Aggregate Server Access Protocol (RFC 5352): what applications link
// against. It is meant to be as easy as net.Listen and net.Dial:
//
//	pe, err := asap.Register(ctx, "echo", ln, asap.WithRegistrars("10.0.0.1:3863"),
//		asap.WithPolicy(policy.WeightedRoundRobin(3)))
//	sess, err := pe.Accept() // a net.Conn carrying the session layer
//
//	conn, err := asap.Dial(ctx, "echo", asap.WithRegistrars("10.0.0.1:3863"))
//
// # Pool element
//
// Register finds a registrar (a static list, or ASAP Server Announces heard
// over UDP), registers the listener's address with a lifetime and policy
// values, and keeps the registration alive: it re-registers every interval
// (30 s by default, lifetime 3 × interval, as rsplib), answers Endpoint
// Keep-Alives, follows a takeover (a Keep-Alive with the home flag from
// another registrar makes that one its home and re-registers with it) and
// changes home when its home registrar's connection dies or stops answering.
// The registration logic is a pure state machine (peMachine) fed with
// messages and clock ticks; the PoolElement drives it with I/O.
//
// Drain deregisters first, so no new pool user is sent to the PE, then keeps
// serving the open sessions until they end or the context's deadline passes.
//
// # Pool user
//
// Dial resolves the pool handle (through a local cache with a configurable
// staleness), picks a PE, and returns a Conn. When the PE fails, the Conn
// reports it unreachable to the registrar, drops it from the cache, picks
// another (re-resolving when the cache has none), replays the last ASAP
// Cookie the old PE sent as a Cookie Echo, and reports the switch: the
// pending Read or Write returns a *FailoverError (retry it on the same Conn)
// and the FailoverEvent is also sent on Conn.Failovers.
//
// # Session channel over SCTP
//
// A PE whose listener is a transport.SessionListener (transport.ListenSession)
// serves sessions as rsplib's PEs do, and its user transport says SCTP: one
// association per session, application data on PPID 0, the session layer's
// ASAP messages (Cookie, Cookie Echo, Business Card) on PPID 11. A pool
// user opens such a session to every PE whose user transport is SCTP where
// the kernel has SCTP; rspterminal and rspserver talk to these PEs and pool
// users. A PE whose transport the pool user cannot use (SCTP without kernel
// support, UDP) is skipped and never reported unreachable
// (ErrUnusableTransport).
//
// # Session channel over TCP
//
// rsplib multiplexes the session layer (Cookie, Cookie Echo, Business Card)
// with application data on the PE's SCTP association by payload protocol
// identifier. TCP has no PPIDs, so a session here is a sequence of frames,
// each starting with the RSerPool common header:
//
//	byte 0     type: 0x00 application data, or an ASAP message type
//	           (0x0b Cookie, 0x0c Cookie Echo, 0x0d Business Card)
//	byte 1     flags (0)
//	bytes 2-3  length of the frame, header included, big endian
//
// A data frame's body is application bytes (at most 65531 per frame; longer
// writes are split); a control frame is the whole ASAP message, encoded by
// package wire. No ASAP message has type 0x00 (RFC 5352 assigns 0x01-0x0e),
// so data can never be mistaken for an ASAP message. The framing is the
// transport package's TCP mapping (the header's length field) extended with
// the data type, so frame boundaries are found the same way on both
// channels.
package asap
