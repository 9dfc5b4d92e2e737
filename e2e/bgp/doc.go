// Package bgpe2e runs rspxdp nodes behind a real router: BIRD 2 in its own
// network namespace peers over BGP with every node, installs the VIP as a
// kernel ECMP route with an L4 multipath hash, and the test measures what
// happens to established client connections when a node stops, crashes or
// joins, and when a pool loses all its PEs.
package bgpe2e
