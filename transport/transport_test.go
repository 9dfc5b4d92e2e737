package transport

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestProtocolNumbers(t *testing.T) {
	for _, tc := range []struct {
		p                Protocol
		name             string
		ppid             uint32
		port             int
		group, defaultAd string
	}{
		{ASAP, "ASAP", 11, 3863, "239.0.0.50:3863", "[::1]:3863"},
		{ENRP, "ENRP", 12, 9901, "239.0.0.51:9901", "[::1]:9901"},
	} {
		if tc.p.String() != tc.name || tc.p.PPID() != tc.ppid || tc.p.DefaultPort() != tc.port ||
			tc.p.AnnounceGroup().String() != tc.group || tc.p.DefaultAddr("::1") != tc.defaultAd {
			t.Errorf("%s: got %s ppid %d port %d group %v addr %s", tc.name, tc.p, tc.p.PPID(), tc.p.DefaultPort(), tc.p.AnnounceGroup(), tc.p.DefaultAddr("::1"))
		}
	}
	if Protocol(9).PPID() != 0 || Protocol(9).AnnounceGroup() != nil || Protocol(9).String() != "protocol(9)" {
		t.Error("unknown protocol has numbers")
	}
}

func TestConfigValidation(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no protocol":       {},
		"max below header":  {Protocol: ASAP, MaxMessageSize: 3},
		"max above 16 bits": {Protocol: ASAP, MaxMessageSize: 65536},
	} {
		if _, err := NewTCP(cfg); err == nil {
			t.Errorf("%s: NewTCP accepted %+v", name, cfg)
		}
	}
	c, err := Config{Protocol: ENRP}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxMessageSize != 65535 || c.FrameTimeout != 10*time.Second || c.IdleTimeout != 0 || c.WriteTimeout != 10*time.Second || c.Logger == nil {
		t.Errorf("defaults: %+v", c)
	}
	if _, err := New("carrier-pigeon", Config{Protocol: ASAP}); err == nil {
		t.Error("New accepted an unknown transport")
	}
	if _, err := NewTLS(Config{Protocol: ASAP}, nil); err == nil {
		t.Error("NewTLS accepted a nil tls.Config")
	}
}

func TestFrameErrorText(t *testing.T) {
	remote := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 3863}
	for _, tc := range []struct {
		e    *FrameError
		want []string
	}{
		{&FrameError{Err: ErrOversized, Remote: remote, Length: 60000, Cause: errors.New("maximum 1024")}, []string{"192.0.2.1:3863", "above maximum", "length 60000", "maximum 1024"}},
		{&FrameError{Err: ErrBadLength, Remote: remote, Length: 0}, []string{"below header", "length 0"}},
		{&FrameError{Err: ErrStalled, Remote: remote, Length: 100, Got: 14}, []string{"stalled", "14 of 100 bytes"}},
		{&FrameError{Err: ErrTruncated, Remote: remote, Got: 2}, []string{"closed mid-message", "2 header bytes"}},
		{&FrameError{Err: ErrWrongPPID, Remote: remote, Got: 12}, []string{"payload protocol", "got 12"}},
	} {
		s := tc.e.Error()
		for _, w := range tc.want {
			if !strings.Contains(s, w) {
				t.Errorf("%q lacks %q", s, w)
			}
		}
		if !errors.Is(tc.e, tc.e.Err) {
			t.Errorf("%q does not unwrap to its sentinel", s)
		}
	}
}

// A dial that cannot complete honours its context.
func TestDialHonoursContext(t *testing.T) {
	tr, _ := NewTCP(Config{Protocol: ASAP})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tr.Dial(ctx, "127.0.0.1:1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("dial with cancelled ctx: %v", err)
	}
}
