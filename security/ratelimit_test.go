package security

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestRateLimiter(t *testing.T) {
	type step struct {
		at   time.Duration // since t0
		key  string
		want bool
	}
	for _, tc := range []struct {
		name  string
		cfg   RateConfig
		steps []step
	}{
		{"unlimited by default (rsplib MaxHRRate -1)", RateConfig{}, []step{
			{0, "a", true}, {0, "a", true}, {0, "a", true}, {0, "a", true},
		}},
		{"burst then refused", RateConfig{Rate: 1, Burst: 2}, []step{
			{0, "a", true}, {0, "a", true}, {0, "a", false}, {0, "a", false},
		}},
		{"refill at rate", RateConfig{Rate: 2, Burst: 1}, []step{
			{0, "a", true}, {100 * time.Millisecond, "a", false},
			{500 * time.Millisecond, "a", true}, {600 * time.Millisecond, "a", false},
			{time.Second, "a", true},
		}},
		{"refill capped at burst", RateConfig{Rate: 10, Burst: 3}, []step{
			{0, "a", true}, {time.Hour, "a", true}, {time.Hour, "a", true}, {time.Hour, "a", true}, {time.Hour, "a", false},
		}},
		{"clients are independent", RateConfig{Rate: 1, Burst: 1}, []step{
			{0, "a", true}, {0, "a", false}, {0, "b", true}, {0, "b", false},
		}},
		{"time going backwards gives nothing", RateConfig{Rate: 1, Burst: 1}, []step{
			{time.Second, "a", true}, {0, "a", false}, {time.Second, "a", false}, {2 * time.Second, "a", true},
		}},
		{"refusal costs nothing", RateConfig{Rate: 1, Burst: 1}, []step{
			{0, "a", true}, {500 * time.Millisecond, "a", false}, {900 * time.Millisecond, "a", false}, {time.Second, "a", true},
		}},
		{"burst below 1 means max(1, rate)", RateConfig{Rate: 3}, []step{
			{0, "a", true}, {0, "a", true}, {0, "a", true}, {0, "a", false},
		}},
		{"evicted client comes back with a full bucket", RateConfig{Rate: 1, Burst: 1, MaxClients: 2}, []step{
			{0, "a", true}, {0, "a", false}, {0, "b", true}, {0, "c", true}, {0, "a", true},
		}},
		{"recently seen client is kept", RateConfig{Rate: 1, Burst: 1, MaxClients: 2}, []step{
			{0, "a", true}, {0, "b", true}, {0, "a", false}, {0, "c", true}, {0, "a", false}, {0, "b", true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewRateLimiter(tc.cfg)
			for i, s := range tc.steps {
				if got := l.Allow(s.key, t0.Add(s.at)); got != s.want {
					t.Fatalf("step %d (%s at %v): %v, want %v", i, s.key, s.at, got, s.want)
				}
			}
		})
	}
}

// TestRFC5355_FloodingResolutions: a PU flooding handle resolutions gets
// its rate and no more, other PUs are unaffected, and a flood of fresh
// source addresses cannot grow the limiter past its bound.
func TestRFC5355_FloodingResolutions(t *testing.T) {
	l := NewRateLimiter(RateConfig{Rate: 100, Burst: 10, MaxClients: 1000})
	flooder := ClientKey(Identity{"rspxdp://pu/flooder"}, netip.MustParseAddrPort("10.0.0.1:4000"))
	honest := ClientKey(Identity{"rspxdp://pu/honest"}, netip.MustParseAddrPort("10.0.0.2:4000"))
	// 10 s of a flood at 100,000 requests/s, in 1 ms ticks of 100 each,
	// with the honest PU asking 10 times a second.
	allowed, honestOK, honestAsked := 0, 0, 0
	for ms := 0; ms < 10000; ms++ {
		now := t0.Add(time.Duration(ms) * time.Millisecond)
		for range 100 {
			if l.Allow(flooder, now) {
				allowed++
			}
		}
		if ms%100 == 0 {
			honestAsked++
			if l.Allow(honest, now) {
				honestOK++
			}
		}
	}
	// Burst + rate * 10 s, give or take the last partial token.
	if want := 10 + 100*10; allowed < want-1 || allowed > want {
		t.Errorf("flooder got %d resolutions in 10 s, want about %d", allowed, want)
	}
	if honestOK != honestAsked {
		t.Errorf("honest PU got %d of %d", honestOK, honestAsked)
	}
	// Address-keyed clients: a million spoofed-looking sources.
	for i := range 1_000_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.Allow(ClientKey(nil, netip.AddrPortFrom(a, uint16(i))), t0)
	}
	if n := l.Len(); n > 1000 {
		t.Errorf("limiter tracks %d clients, bound is 1000", n)
	}
}

func TestClientKey(t *testing.T) {
	for _, tc := range []struct {
		id   Identity
		ap   string
		want string
	}{
		{Identity{"rspxdp://pu/a", "a"}, "10.0.0.1:1", "id:rspxdp://pu/a"},
		{nil, "10.0.0.1:1", "addr:10.0.0.1"},
		{nil, "10.0.0.1:2", "addr:10.0.0.1"},
		{nil, "[::ffff:10.0.0.1]:2", "addr:10.0.0.1"},
		{nil, "[2001:db8::1]:2", "addr:2001:db8::1"},
	} {
		if got := ClientKey(tc.id, netip.MustParseAddrPort(tc.ap)); got != tc.want {
			t.Errorf("ClientKey(%v, %s) = %q, want %q", tc.id, tc.ap, got, tc.want)
		}
	}
}

func TestReportCounter(t *testing.T) {
	type step struct {
		at       time.Duration
		target   string
		reporter string
		remove   bool
	}
	for _, tc := range []struct {
		name  string
		cfg   ReportConfig
		steps []step
	}{
		{"three distinct reporters (rsplib MaxBadPEReports)", ReportConfig{}, []step{
			{0, "pe1", "a", false}, {time.Second, "pe1", "b", false}, {2 * time.Second, "pe1", "c", true},
		}},
		{"one reporter many times", ReportConfig{}, []step{
			{0, "pe1", "a", false}, {1, "pe1", "a", false}, {2, "pe1", "a", false}, {3, "pe1", "a", false},
		}},
		{"reports age out", ReportConfig{Reporters: 2, Window: 10 * time.Second}, []step{
			{0, "pe1", "a", false}, {10 * time.Second, "pe1", "b", false}, {15 * time.Second, "pe1", "a", true},
		}},
		{"a repeated report refreshes its time", ReportConfig{Reporters: 2, Window: 10 * time.Second}, []step{
			{0, "pe1", "a", false}, {9 * time.Second, "pe1", "a", false}, {18 * time.Second, "pe1", "b", true},
		}},
		{"targets are independent", ReportConfig{Reporters: 2}, []step{
			{0, "pe1", "a", false}, {0, "pe2", "b", false}, {0, "pe1", "b", true}, {0, "pe2", "a", true},
		}},
		{"removal clears the record", ReportConfig{Reporters: 2}, []step{
			{0, "pe1", "a", false}, {0, "pe1", "b", true}, {0, "pe1", "c", false},
		}},
		{"K=1 removes at once", ReportConfig{Reporters: 1}, []step{
			{0, "pe1", "a", true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewReportCounter(tc.cfg)
			for i, s := range tc.steps {
				if got := c.Report(s.target, s.reporter, t0.Add(s.at)); got != s.remove {
					t.Fatalf("step %d (%s reports %s at %v): remove=%v, want %v", i, s.reporter, s.target, s.at, got, s.remove)
				}
			}
		})
	}
}

// TestRFC5355_LyingUnreachableReports: one PU sending Endpoint
// Unreachable for a healthy PE as fast as it can never gets it removed;
// two liars neither (K=3); three distinct reporters do. Memory stays
// bounded under reports for endless made-up PEs.
func TestRFC5355_LyingUnreachableReports(t *testing.T) {
	c := NewReportCounter(ReportConfig{MaxTargets: 100})
	healthy := TargetKey([]byte("echo"), 0x1234)
	liar := ClientKey(Identity{"rspxdp://pu/liar"}, netip.AddrPort{})
	for i := range 100_000 {
		if c.Report(healthy, liar, t0.Add(time.Duration(i)*time.Millisecond)) {
			t.Fatalf("one liar removed the PE after %d reports", i+1)
		}
	}
	now := t0.Add(100 * time.Second)
	if c.Report(healthy, "id:rspxdp://pu/liar2", now) {
		t.Fatal("two liars removed the PE")
	}
	if got := c.Pending(healthy, now); got != 2 {
		t.Errorf("pending reporters %d, want 2", got)
	}
	if !c.Report(healthy, "id:rspxdp://pu/third", now) {
		t.Fatal("three distinct reporters did not remove the PE")
	}
	c.Forget(healthy)
	for i := range 100_000 {
		c.Report(TargetKey([]byte("echo"), uint32(i)), fmt.Sprint("r", i%7), now)
	}
	if n := c.Len(); n > 100 {
		t.Errorf("counter tracks %d PEs, bound is 100", n)
	}
}

// BenchmarkRateLimiterAllow: the cost per handle resolution of the
// limiter for 10,000 known clients, and for twice as many as it tracks
// (every request evicts: a flood of fresh source addresses).
func BenchmarkRateLimiterAllow(b *testing.B) {
	b.Run("known", func(b *testing.B) { benchLimiter(b, 10000) })
	b.Run("evicting", func(b *testing.B) { benchLimiter(b, 20000) })
}

func benchLimiter(b *testing.B, clients int) {
	l := NewRateLimiter(RateConfig{Rate: 100, Burst: 10, MaxClients: 10000})
	keys := make([]string, clients)
	for i := range keys {
		keys[i] = fmt.Sprint("addr:10.0.", i/256, ".", i%256)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Allow(keys[i%len(keys)], t0.Add(time.Duration(i)*time.Microsecond))
		i++
	}
}

// BenchmarkReportCounter: the cost of one Endpoint Unreachable report.
func BenchmarkReportCounter(b *testing.B) {
	c := NewReportCounter(ReportConfig{MaxTargets: 10000})
	targets := make([]string, 1000)
	for i := range targets {
		targets[i] = TargetKey([]byte("echo"), uint32(i))
	}
	reporters := []string{"id:rspxdp://pu/a", "id:rspxdp://pu/b"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Report(targets[i%len(targets)], reporters[i%2], t0)
		i++
	}
}
