package bgp

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeRoutes records what the announcer asked of the speaker.
type fakeRoutes struct {
	calls []string
	fail  bool
}

func (f *fakeRoutes) Announce(p netip.Prefix) error { return f.do("+" + p.String()) }
func (f *fakeRoutes) Withdraw(p netip.Prefix) error { return f.do("-" + p.String()) }
func (f *fakeRoutes) do(s string) error {
	if f.fail {
		return errors.New("refused")
	}
	f.calls = append(f.calls, s)
	return nil
}

func TestAnnouncerMetricsAndStatus(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := &fakeRoutes{}
	a := NewAnnouncer(f, []netip.Prefix{vip4, vip6}, 1, 0, reg, testLogger())
	a.Update(healthy(2, 1))
	a.Update(healthy(2, 0))
	a.SessionChanged(PeerStatus{Address: "10.0.0.1", State: "established"})
	if want := []string{"+10.99.0.1/32", "+fd00:99::1/128", "-fd00:99::1/128"}; !reflect.DeepEqual(f.calls, want) {
		t.Fatalf("calls %v, want %v", f.calls, want)
	}
	expect := `
# HELP rspxdp_bgp_announced_vips VIP prefixes announced to the BGP peers.
# TYPE rspxdp_bgp_announced_vips gauge
rspxdp_bgp_announced_vips 1
# HELP rspxdp_bgp_withdrawals_total VIP prefix withdrawals, by reason (too-few-pes, dataplane-detached, registrar-down, shutdown).
# TYPE rspxdp_bgp_withdrawals_total counter
rspxdp_bgp_withdrawals_total{reason="dataplane-detached"} 0
rspxdp_bgp_withdrawals_total{reason="registrar-down"} 0
rspxdp_bgp_withdrawals_total{reason="shutdown"} 0
rspxdp_bgp_withdrawals_total{reason="too-few-pes"} 1
rspxdp_bgp_withdrawals_total{reason="vip-removed"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expect), "rspxdp_bgp_announced_vips", "rspxdp_bgp_withdrawals_total"); err != nil {
		t.Error(err)
	}
	if v := testutil.ToFloat64(a.session.WithLabelValues("10.0.0.1", "established")); v != 1 {
		t.Errorf("session_state{established} = %v", v)
	}
	if v := testutil.ToFloat64(a.session.WithLabelValues("10.0.0.1", "idle")); v != 0 {
		t.Errorf("session_state{idle} = %v", v)
	}
	st := a.Status()
	want := []VIPStatus{{"10.99.0.1/32", true, ReasonHealthy}, {"fd00:99::1/128", false, ReasonTooFewPEs}}
	if !reflect.DeepEqual(st.VIPs, want) || st.Withdrawals[ReasonTooFewPEs] != 1 {
		t.Errorf("status %+v", st)
	}

	// A reload drops the announced v4 VIP.
	a.SetPrefixes([]netip.Prefix{vip6})
	if last := f.calls[len(f.calls)-1]; last != "-10.99.0.1/32" {
		t.Errorf("calls after the reload %v", f.calls)
	}
	a.SetPrefixes([]netip.Prefix{vip4, vip6})
	a.Update(healthy(2, 0))

	// Shutdown: withdraw, and never announce again.
	if n := a.WithdrawAll(); n != 1 {
		t.Errorf("WithdrawAll withdrew %d, want 1", n)
	}
	a.Update(healthy(3, 3))
	if last := f.calls[len(f.calls)-1]; last != "-10.99.0.1/32" || len(f.calls) != 6 {
		t.Errorf("calls after shutdown %v", f.calls)
	}
	if v := testutil.ToFloat64(a.withdrawn.WithLabelValues("shutdown")); v != 1 {
		t.Errorf("withdrawals{shutdown} = %v", v)
	}
	if n := a.WithdrawAll(); n != 0 {
		t.Errorf("second WithdrawAll withdrew %d", n)
	}
}

func TestAnnouncerSpeakerFailure(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := &fakeRoutes{fail: true}
	a := NewAnnouncer(f, []netip.Prefix{vip4}, 1, 0, reg, testLogger())
	a.Update(healthy(1, 0))
	if v := testutil.ToFloat64(a.failures); v != 1 {
		t.Errorf("route_errors_total = %v", v)
	}
	if v := testutil.ToFloat64(a.announcedN); v != 0 {
		t.Errorf("announced_vips = %v after a refused announcement", v)
	}
	f.fail = false
	a.Update(healthy(1, 0))
	if want := []string{"+10.99.0.1/32"}; !reflect.DeepEqual(f.calls, want) {
		t.Errorf("calls after the speaker recovered %v, want the retry %v", f.calls, want)
	}
}
