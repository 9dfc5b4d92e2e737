package asap

import (
	"strings"
	"testing"

	"github.com/rspxdp/rspxdp/selector/policy"
)

func TestParsePolicy(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    policy.Settings
		wantErr string
	}{
		{in: "RoundRobin", want: policy.RoundRobin()},
		{in: "rr", want: policy.RoundRobin()},
		{in: "WeightedRoundRobin:3", want: policy.WeightedRoundRobin(3)},
		{in: "wrr", want: policy.WeightedRoundRobin(1)},
		{in: "priority:9", want: policy.Priority(9)},
		{in: "LeastUsed:50%", want: policy.LeastUsed(policy.MaxLoad / 2)},
		{in: "lud:1000,0x10", want: policy.LeastUsedDegradation(1000, 16)},
		{in: "fastest", wantErr: `unknown policy "fastest"`},
		{in: "wrr:3,4", wantErr: "takes 1 value(s) (weight), got 2"},
		{in: "wrr:50%", wantErr: "not a fraction"},
		{in: "lu:x", wantErr: "want a 32-bit number"},
		{in: "lu:120%", wantErr: "percentage"},
	} {
		got, err := ParsePolicy(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParsePolicy(%q) error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePolicy(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// TestFormatPolicyAsEntered: a policy is shown as the operator entered it,
// loads as percentages, not as raw 32-bit values.
func TestFormatPolicyAsEntered(t *testing.T) {
	for _, in := range []string{"rr", "wrr:3", "lu:20%", "lud:10%,1%", "lu:25.5%", "prio:7", "rand", "wrand:2"} {
		s, err := ParsePolicy(in)
		if err != nil {
			t.Fatalf("ParsePolicy(%q): %v", in, err)
		}
		if got := FormatPolicy(s); got != in {
			t.Errorf("FormatPolicy(ParsePolicy(%q)) = %q", in, got)
		}
	}
}
