// Package nodee2e holds the end-to-end evidence for `rspxdp node`: the real
// binary, two nodes peering over ENRP and three `rspxdp pe` processes run in
// network namespaces, with TCP connections from an RSerPool-unaware client.
// It has only tests; they need root and iproute2.
package nodee2e
