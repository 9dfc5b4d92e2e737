package enrp

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// A registrar takes at most MaxConnections associations per listener: a
// flood of connections is cut at the door, and a slot freed is reusable.
func TestMaxConnections(t *testing.T) {
	cfg := itConfig(1)
	cfg.MaxConnections = 2
	n := startNode(t, cfg)
	addr := n.srv.ASAPAddr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	served := func(r *rpc) bool {
		_, err := r.call(ctx, HandleResolution{Handle: "none"})
		return err == nil
	}
	a, b := dialRPC(t, addr), dialRPC(t, addr)
	if !served(a) || !served(b) {
		t.Fatal("connections within the bound not served")
	}
	c := dialRPC(t, addr)
	if served(c) {
		t.Fatal("a third connection was served with MaxConnections 2")
	}
	a.conn.Close()
	if _, err := eventually(2*time.Second, func() bool {
		d := dialRPC(t, addr)
		defer d.conn.Close()
		return served(d)
	}); err != nil {
		t.Fatal("a freed slot was not reusable")
	}
	b.conn.Close()
}

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
