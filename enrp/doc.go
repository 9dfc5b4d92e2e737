// Package enrp is the RSerPool registrar: the ENRP server of RFC 5353
// together with the server side of ASAP (RFC 5352).
//
// # Structure
//
// Core is the protocol as a pure state machine, in the style of etcd's
// raft: Step feeds it one decoded message received on a link, Tick
// advances its clock, and Drain returns what it wants sent (Output: a
// message for a link, a PE to dial, a peer to connect, an announce). It
// reads no clock and opens no socket, so every exchange is unit tested
// with values and a fake clock. The handlespace itself (pools, policies,
// consistency rules, per-owner checksums, expiry, steering sets) is a
// *selector.Handlespace, exposed by Handlespace() for the XDP node to
// subscribe to.
//
// Server is the driver: transport listeners for ASAP and ENRP, one reader
// and one writer goroutine per connection, static and learned peers dialled
// and redialled with backoff (redial.go), PEs dialled at their ASAP address after a takeover, a timer
// goroutine sleeping until Core.NextDeadline, UDP server announces. It
// serialises the core behind one mutex and queues each output on its link
// under that mutex, so every link carries messages in the order the core
// produced them.
//
// The core's typed messages and their codec to package wire are package
// msg's, which the client library (package asap) shares; messages.go
// names them here.
//
// # Behaviour
//
// Registration: authorised by the AllowList (pool handles, source
// networks; cause 0xa otherwise), checked for invalid values (3) and by the
// selector for pool consistency (5, 7, 8), identifier ownership (4) and
// capacity (6). A re-registration refreshes lifetime and policy values.
// Every accepted registration and every removal is replicated to all peers
// by Handle Update.
//
// Keep-alive: the home registrar sends Endpoint Keep-Alive to each PE it
// owns every KeepAliveInterval; a PE that does not ack within
// KeepAliveTimeout is removed everywhere. PEs owned by peers expire after
// their registration life unless refreshed.
//
// Deregistration drains the PE: it leaves resolution at once but stays in
// its pool's steering set with weight 0 for DrainTimeout, so its existing
// flows continue. Only the association that registered a PE may
// deregister it while that association is open.
//
// Peers: every PeerHeartbeatCycle a Presence carries the checksum over the
// PEs the sender owns. A receiver whose view of that set has another
// checksum on two consecutive Presences asks for the sender's own PEs
// (Handle Table Request with the own-children-only flag) and replaces its
// view. A new registrar asks its first peer (the mentor) for its peer list
// and the whole handlespace, in Handle Table Responses of at most
// MaxPEsPerResponse PEs chained by the more-to-send flag.
//
// Takeover: a peer silent for PeerMaxTimeLastHeard is asked for a
// Presence; silent PeerMaxTimeNoResponse longer, it is dead. Its PEs are
// claimed with Init Takeover to all other peers; when two registrars
// claim the same target, the one with the lower server ID wins (as
// rsplib). With every ack, or at TakeoverExpiry, the winner sends Takeover
// Server and a Keep-Alive with the home flag to each adopted PE, which then
// re-registers with it. Links we opened keep receiving a Presence with the
// reply flag while their peer is unknown or dead, so a restarted peer or a
// healed partition is found again; the audit then reconciles ownership.
// A closed connection alone never makes a peer dead: it is redialled.
//
// Leave (leave.go): when Server.Run's context ends, the registrar sends
// each peer a Presence with the Leaving flag (a reserved bit) and goes
// quiet; the peers take it over at once by the exchange above, and the
// winner's Takeover Server tells the leaver it may close. After
// ServerConfig.LeaveTimeout it closes anyway, and its PEs, losing their
// association, register with another registrar.
//
// Endpoint Unreachable for a peer's PE (unreachable.go) is passed to the
// home's ASAP endpoint, which Presence carries in a private parameter other
// implementations skip; without it the report is counted locally. Unknown
// messages are answered with an Error (errmsg.go).
package enrp
