//go:build race

package enrp

// raceEnabled scales load tests down under the race detector, which slows
// the registrar path about tenfold.
const raceEnabled = true
