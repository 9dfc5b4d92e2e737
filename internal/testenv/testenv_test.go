package testenv

import (
	"testing"
	"time"
)

func TestInCI(t *testing.T) {
	for _, tc := range []struct {
		val  string
		want bool
	}{
		{"true", true}, {"1", true}, {"TRUE", true},
		{"", false}, {"false", false}, {"0", false}, {"yes-please", false},
	} {
		t.Setenv("CI", tc.val)
		if got := InCI(); got != tc.want {
			t.Errorf("CI=%q: InCI() = %v, want %v", tc.val, got, tc.want)
		}
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if root == "" {
		t.Fatal("empty module root")
	}
}

func TestTimeScale(t *testing.T) {
	for _, tc := range []struct {
		env     string
		want    float64
		wantErr bool
	}{
		{"", 1, false},
		{"1", 1, false},
		{"4", 4, false},
		{"2.5", 2.5, false},
		{"0.5", 1, true},
		{"fast", 1, true},
	} {
		t.Setenv("RSPXDP_TIME_SCALE", tc.env)
		got, err := TimeScale()
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("RSPXDP_TIME_SCALE=%q: %v, %v; want %v, error %v", tc.env, got, err, tc.want, tc.wantErr)
		}
	}
	t.Setenv("RSPXDP_TIME_SCALE", "3")
	if got := Scaled(100 * time.Millisecond); got != 300*time.Millisecond {
		t.Errorf("Scaled(100ms) with scale 3 = %v", got)
	}
}

func TestTransport(t *testing.T) {
	for env, want := range map[string]string{"": "tcp", "tcp": "tcp", "sctp": "sctp"} {
		t.Setenv("RSPXDP_TEST_TRANSPORT", env)
		if got := Transport(); got != want {
			t.Errorf("RSPXDP_TEST_TRANSPORT=%q: %q, want %q", env, got, want)
		}
	}
}
