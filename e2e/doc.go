// Package e2e holds rspxdp's end-to-end tests of the XDP data path: a client,
// a load balancer and three pool elements, each in a network namespace the
// test creates and removes, with real TCP connections and UDP flows between
// them; and the packets-per-second comparison of the XDP load balancer with
// nftables and HAProxy on the same topology (TestPPS, run with RSPXDP_PPS=1).
package e2e
