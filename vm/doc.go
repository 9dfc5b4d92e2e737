// Package vm holds rspxdp's test VM: a Debian guest with kernel SCTP and
// rsplib, in which the SCTP transport tests and the rsplib interop scenarios
// run. The machinery is in shell (build-image.sh, run.sh, guest/); this
// package's tests boot the guest once and assert on what it brought back,
// scenario by scenario. Run them with `make vmtest`.
package vm
