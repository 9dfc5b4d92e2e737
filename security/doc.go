// Package security holds rspxdp's answers to the threats of RFC 5355 that
// need more than a correct protocol machine: who a peer is (TLS 1.3 with
// mutual authentication), what it may do (an authorisation policy), and
// how much of it the registrar will take (per-client rate limits and the
// distinct-reporters rule for Endpoint Unreachable).
//
// The package does no I/O of its own beyond reading its files when told
// to, and keeps no global state; time is always passed in. The registrar
// (package enrp) and the PE/PU library (package asap) call it at the
// points listed below.
//
// # Pieces
//
//   - Reloader (NewReloader, Files): server and client *tls.Config for
//     transport.NewTLS, TLS 1.3 only, client certificates required and
//     verified. Reload re-reads the CA bundle, certificate and key and
//     swaps them for handshakes that start afterwards (GetConfigForClient,
//     GetClientCertificate); open sessions keep their keys and are not
//     dropped. A failed Reload keeps the old material. Callers wire SIGHUP
//     to Reload (and to PolicyFile.Reload).
//   - Identity (PeerIdentity, CertIdentity): the URI and DNS SANs of the
//     peer's verified leaf. Over package transport:
//     CertIdentity(conn.Peer().Leaf()). Identity.Key is the one string
//     stored as selector.PoolElement.Owner.
//   - Policy (ParsePolicy, LoadPolicy, PolicyFile): YAML rules mapping
//     identity globs to rights: MayRegister(id, handle, src),
//     MayPeer(id), MayResolve(id, handle). Deny by default; strict
//     parsing. See testdata/policy.example.yaml.
//   - CheckOwner(owner, id): only the identity that registered a PE
//     identifier may deregister or re-register it.
//   - RateLimiter (per ClientKey token bucket, bounded LRU) for handle
//     resolutions and Endpoint Unreachable reports; rsplib's MaxHRRate and
//     MaxEURate default to unlimited, and so does a zero RateConfig.
//   - ReportCounter: a PE is removed on Endpoint Unreachable only once
//     Reporters distinct reporters (default 3, rsplib's MaxBadPEReports)
//     reported it within Window, so one liar cannot evict a healthy PE.
//   - NewCA, CA.Issue: the test PKI behind `rspxdp certs`.
//
// # Integration plan
//
// Configuration: the registrar, PE and PU take --tls-ca, --tls-cert,
// --tls-key (all three or none) and the registrar --policy FILE. With TLS
// configured, the ASAP and ENRP TCP listeners are built with
// transport.NewTLS(cfg, reloader.ServerConfig()) and dialling sides with
// reloader.ClientConfig(opts); plain TCP stays available only when no TLS
// flags are given, and a registrar with TLS but no --policy refuses to
// start (an empty policy is written `rules: []`). SIGHUP calls
// Reloader.Reload and PolicyFile.Reload; errors are logged and the old
// material stays.
//
// Registrar, ASAP side (package enrp), per accepted connection: compute
// id := CertIdentity(conn.Peer().Leaf()) once after the first message
// and keep it with the association.
//
//   - Registration (handle h, PE p, from conn.RemoteAddr() src): if TLS is
//     on and !policy.MayRegister(id, h, src) answer a rejected
//     Registration Response with cause 0xa (wire.CauseRejectedSecurity)
//     and log identity, handle and source. If hs.Lookup(h, p.ID) finds an
//     existing element and CheckOwner(existing.Owner, id) fails, answer
//     cause 0xa and log (a registration stealing a PE id). Otherwise set
//     PoolElement.Owner = id.Key() and call Handlespace.Register. The
//     registrar should also check each address of p's user transport
//     with MayRegister(id, h, addr), so a PE cannot point a pool at a
//     host outside its networks.
//   - Deregistration (h, p.ID): hs.Lookup, then CheckOwner(existing.Owner,
//     id); on failure answer a Deregistration Response with cause 0xa and
//     log, before touching the handlespace.
//   - Handle Resolution (h): if !limHR.Allow(ClientKey(id, src), now)
//     drop it or answer with an error (never queue it); if TLS is on and
//     !policy.MayResolve(id, h) answer cause 0xa.
//   - Endpoint Unreachable (h, p.ID): reporter := ClientKey(id, src); if
//     !limEU.Allow(reporter, now) ignore it; else if
//     reports.Report(TargetKey(h, p.ID), reporter, now) call
//     Handlespace.ReportUnreachable/Remove (the ReportCounter replaces
//     counting raw reports against MaxBadPEReports). Call
//     reports.Forget(TargetKey(h, id)) when the PE deregisters,
//     re-registers or is removed otherwise.
//
// Registrar, ENRP side: peers connect with their registrar certificates
// both ways. Every ENRP message (Presence, Handle Table Request/Response,
// Handle Update, List Request/Response, Init Takeover and Ack, Takeover
// Server) is processed only if policy.MayPeer(id) for the connection it
// arrived on; otherwise it is dropped, logged, and the connection closed.
// ENRP over UDP announces carries no identity: an announce may only
// trigger a TLS connection to the announced address, whose certificate
// then decides. Handlespace.Update (no owner check) is reserved for
// messages from MayPeer identities; the Owner strings replicate with them
// so any registrar can enforce CheckOwner after a takeover.
//
// PE and PU (package asap): dial registrars with
// reloader.ClientConfig(ClientOptions{TrustedServers:
// []string{"rspxdp://registrar/*"}}) (or the deployment's registrar
// pattern), so a certificate from the right CA issued to a PE or PU
// cannot answer resolutions (RFC 5355 masquerading registrar). Registrars
// learned from announces are dialled by address: their certificates carry
// those addresses (rspxdp certs --ip) or ClientOptions.ServerName names a
// DNS SAN they all carry. A PU that receives a Handle Resolution Response
// on a connection that failed this check never sees it: the handshake
// fails.
package security
