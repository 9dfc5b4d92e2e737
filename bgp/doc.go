// Package bgp announces a node's virtual IPs to its upstream routers over
// BGP, so a router can spread flows over several nodes with ECMP, and
// withdraws them when the node must not take traffic.
//
// It has two halves. Decider is a pure state machine: it is fed the node's
// health (data plane attached, registrar up, active PEs per VIP, shutting
// down) and answers which VIP prefixes to announce or withdraw, each with a
// reason; it knows nothing of sockets or clocks. Speaker is an in-process
// BGP speaker built on GoBGP (github.com/osrg/gobgp/v4) that holds the
// sessions and carries the decisions to the peers: every VIP as a /32 or
// /128, IPv4 and IPv6 unicast, next hop self. Announcer joins the two and
// says what it did in logs and Prometheus metrics.
//
// An IPv4 VIP is sent to the IPv4 peers and an IPv6 VIP to the IPv6 peers:
// "next hop self" is the session's own local address, which must be of the
// VIP's family.
package bgp
