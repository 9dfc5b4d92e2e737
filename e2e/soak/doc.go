// Package soak holds rspxdp's soak test: three registrars over TCP on
// 127.0.0.1, pool elements and pool users of package asap, run for a fixed
// time (RSPXDP_SOAK, default 30s) under PE churn and registrar restarts,
// then checked for a consistent handlespace and for leaked goroutines and
// memory. It is the only test of its package, so the goroutine count it
// compares against its baseline is its own.
package soak
