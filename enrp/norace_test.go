//go:build !race

package enrp

const raceEnabled = false
