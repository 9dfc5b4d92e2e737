package testenv

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// Transport returns the transport the protocol integration tests run over:
// "tcp" unless RSPXDP_TEST_TRANSPORT names another ("sctp" in the test VM,
// where the kernel has SCTP). Any other value panics, so a typo never
// silently tests TCP.
func Transport() string {
	switch v := os.Getenv("RSPXDP_TEST_TRANSPORT"); v {
	case "", "tcp":
		return "tcp"
	case "sctp":
		return v
	default:
		panic(fmt.Sprintf("RSPXDP_TEST_TRANSPORT=%q: want tcp or sctp", v))
	}
}

// TimeScale is the factor integration tests stretch their protocol timers
// and deadlines by: RSPXDP_TIME_SCALE (a number >= 1), else 1. The test VM
// sets it, because a guest under software emulation runs several times
// slower than the host the timings were chosen on.
func TimeScale() (float64, error) {
	v := os.Getenv("RSPXDP_TIME_SCALE")
	if v == "" {
		return 1, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 1 || f > 1000 {
		return 1, fmt.Errorf("RSPXDP_TIME_SCALE=%q: want a number from 1 to 1000", v)
	}
	return f, nil
}

// Scaled returns d stretched by TimeScale. An invalid RSPXDP_TIME_SCALE
// panics: it is set by whoever runs the tests, and ignoring it would hide
// the mistake behind flaky timeouts.
func Scaled(d time.Duration) time.Duration {
	f, err := TimeScale()
	if err != nil {
		panic(err)
	}
	return time.Duration(float64(d) * f)
}
