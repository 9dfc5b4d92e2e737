// Package attack holds the registrar's attack and chaos suite (issue 19): an
// `rspxdp registrar` process on 127.0.0.1 is attacked the way an adversary
// and a chaos engineer would, with honest PUs resolving over fresh
// connections every 20 ms alongside, and each attack prints the
// registrar's peak RSS, the honest PUs' success rate and p99 latency
// during the attack, and how long the registrar took to serve normally
// again afterwards (go test -v shows the figures). TestTLSAttacks repeats
// the connection-memory and idle-lockout attacks over TLS (a CA, the
// certificates and a policy made in the test's temporary directory) and
// attacks authorisation message by message across two peering registrars.
//
// `make test` runs the short version (bounded sizes, about a minute);
// RSPXDP_ATTACK=long runs the sizes of the original findings at the
// registrar's default limits.
package attack
