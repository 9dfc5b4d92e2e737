package bgp

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
)

var (
	vip4 = netip.MustParsePrefix("10.99.0.1/32")
	vip6 = netip.MustParsePrefix("fd00:99::1/128")
)

func healthy(pes4, pes6 int) Health {
	return Health{DataplaneAttached: true, RegistrarUp: true,
		ActivePEs: map[netip.Prefix]int{vip4: pes4, vip6: pes6}}
}

func TestEvaluate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		h      Health
		minPEs int
		want   bool
		why    Reason
	}{
		{"healthy", healthy(3, 0), 1, true, ReasonHealthy},
		{"exactly the minimum", healthy(2, 0), 2, true, ReasonHealthy},
		{"below the minimum", healthy(1, 0), 2, false, ReasonTooFewPEs},
		{"no PE", healthy(0, 0), 1, false, ReasonTooFewPEs},
		{"min 0 still needs one PE", healthy(0, 0), 0, false, ReasonTooFewPEs},
		{"prefix unknown to the map", Health{DataplaneAttached: true, RegistrarUp: true}, 1, false, ReasonTooFewPEs},
		{"data plane detached", Health{RegistrarUp: true, ActivePEs: map[netip.Prefix]int{vip4: 3}}, 1, false, ReasonDataplaneDetached},
		{"registrar down", Health{DataplaneAttached: true, ActivePEs: map[netip.Prefix]int{vip4: 3}}, 1, false, ReasonRegistrarDown},
		{"shutdown wins over everything", Health{ShuttingDown: true}, 1, false, ReasonShutdown},
		{"shutdown while healthy", func() Health { h := healthy(3, 3); h.ShuttingDown = true; return h }(), 1, false, ReasonShutdown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := Evaluate(tc.h, vip4, tc.minPEs)
			if got != tc.want || why != tc.why {
				t.Errorf("Evaluate = %v, %s; want %v, %s", got, why, tc.want, tc.why)
			}
		})
	}
}

// TestDeciderSequence walks a node's life: start without PEs, PEs arrive,
// the v6 pool dies, the data plane goes, comes back, shutdown. Each step
// must yield exactly the changes from the step before.
func TestDeciderSequence(t *testing.T) {
	d := NewDecider([]netip.Prefix{vip6, vip4, vip4}, 1, 0)
	if got := d.Prefixes(); !reflect.DeepEqual(got, []netip.Prefix{vip4, vip6}) {
		t.Fatalf("Prefixes = %v, want the two distinct prefixes in order", got)
	}
	detached := healthy(3, 3)
	detached.DataplaneAttached = false
	down := healthy(3, 3)
	down.RegistrarUp = false
	stop := healthy(3, 3)
	stop.ShuttingDown = true
	steps := []struct {
		name string
		h    Health
		want []Change
	}{
		{"start, no PEs yet: nothing to withdraw", healthy(0, 0), nil},
		{"v4 PEs registered", healthy(2, 0), []Change{{vip4, true, ReasonHealthy}}},
		{"v6 PEs registered", healthy(2, 1), []Change{{vip6, true, ReasonHealthy}}},
		{"same health again: no change", healthy(3, 1), nil},
		{"v6 pool dies", healthy(3, 0), []Change{{vip6, false, ReasonTooFewPEs}}},
		{"v6 PE returns", healthy(3, 1), []Change{{vip6, true, ReasonHealthy}}},
		{"data plane detached", detached, []Change{{vip4, false, ReasonDataplaneDetached}, {vip6, false, ReasonDataplaneDetached}}},
		{"reattached", healthy(3, 1), []Change{{vip4, true, ReasonHealthy}, {vip6, true, ReasonHealthy}}},
		{"registrar down", down, []Change{{vip4, false, ReasonRegistrarDown}, {vip6, false, ReasonRegistrarDown}}},
		{"registrar back", healthy(3, 1), []Change{{vip4, true, ReasonHealthy}, {vip6, true, ReasonHealthy}}},
		{"shutdown", stop, []Change{{vip4, false, ReasonShutdown}, {vip6, false, ReasonShutdown}}},
		{"after shutdown nothing more", stop, nil},
	}
	for _, s := range steps {
		got := d.Step(s.h)
		if !reflect.DeepEqual(got, s.want) {
			t.Fatalf("%s: Step = %v, want %v", s.name, got, s.want)
		}
		for _, c := range got {
			if d.Announced(c.Prefix) != c.Announce || d.Reason(c.Prefix) != c.Reason {
				t.Fatalf("%s: state of %s = %v/%s after %v", s.name, c.Prefix, d.Announced(c.Prefix), d.Reason(c.Prefix), c)
			}
		}
	}
}

func TestHostPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"10.99.0.1":          "10.99.0.1/32",
		"::ffff:10.99.0.1":   "10.99.0.1/32",
		"fd00:99::1":         "fd00:99::1/128",
		"2001:db8::dead:bee": "2001:db8::dead:bee/128",
	} {
		if got := HostPrefix(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("HostPrefix(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestDeciderSettle: a prefix is announced only after settle of unbroken
// health; a break restarts the wait; withdrawal does not wait.
func TestDeciderSettle(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int, pes int) Health {
		h := healthy(pes, 0)
		h.Now = t0.Add(time.Duration(ms) * time.Millisecond)
		return h
	}
	d := NewDecider([]netip.Prefix{vip4}, 1, time.Second)
	for _, s := range []struct {
		ms, pes int
		want    []Change
		why     Reason
	}{
		{0, 3, nil, ReasonSettling},
		{900, 3, nil, ReasonSettling},
		{950, 0, nil, ReasonTooFewPEs}, // a break
		{1000, 3, nil, ReasonSettling}, // the wait starts again
		{1999, 3, nil, ReasonSettling},
		{2000, 3, []Change{{vip4, true, ReasonHealthy}}, ReasonHealthy},
		{2001, 0, []Change{{vip4, false, ReasonTooFewPEs}}, ReasonTooFewPEs},
		{2002, 3, nil, ReasonSettling},
	} {
		got := d.Step(at(s.ms, s.pes))
		if !reflect.DeepEqual(got, s.want) || d.Reason(vip4) != s.why {
			t.Fatalf("at %dms with %d PEs: Step = %v (reason %s), want %v (%s)", s.ms, s.pes, got, d.Reason(vip4), s.want, s.why)
		}
	}
}

func TestDeciderSetPrefixes(t *testing.T) {
	d := NewDecider([]netip.Prefix{vip4}, 1, 0)
	d.Step(healthy(1, 1))
	got := d.SetPrefixes([]netip.Prefix{vip6})
	if want := []Change{{vip4, false, ReasonRemoved}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("SetPrefixes = %v, want %v", got, want)
	}
	if got := d.Step(healthy(1, 1)); !reflect.DeepEqual(got, []Change{{vip6, true, ReasonHealthy}}) {
		t.Fatalf("Step after SetPrefixes = %v", got)
	}
	if got := d.SetPrefixes([]netip.Prefix{vip6, vip4}); got != nil {
		t.Fatalf("adding a prefix withdrew %v", got)
	}
}
