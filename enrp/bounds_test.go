package enrp

import (
	"net/netip"
	"testing"
	"time"
)

// Registrations past MaxPEsPerPool or MaxPools are refused with Lack of
// Resources.
func TestPoolBounds(t *testing.T) {
	cfg := testConfig(1)
	cfg.MaxPEsPerPool, cfg.MaxPools = 2, 2
	c, err := NewCore(cfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		handle string
		id     uint32
		cause  Cause
	}{
		{"a", 1, 0}, {"a", 2, 0}, {"a", 3, CauseLackOfResources},
		{"b", 4, 0}, {"c", 5, CauseLackOfResources},
	}
	for _, s := range steps {
		c.Step(1, netip.MustParseAddr("10.0.0.1"), Registration{Handle: s.handle, PE: testPE(s.id)})
		var got Cause
		for _, o := range c.Drain() {
			if r, ok := o.Msg.(RegistrationResponse); ok && r.Reject {
				got = r.Cause
			}
		}
		if got != s.cause {
			t.Errorf("PE %d in %q: cause %v, want %v", s.id, s.handle, got, s.cause)
		}
	}
}
