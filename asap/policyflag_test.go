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
