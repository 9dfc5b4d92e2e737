package asap

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/enrp"
	"github.com/rspxdp/rspxdp/transport"
)

// A PU pointed at the ENRP port, or a dump pointed at the ASAP port, fails
// at once with a hint instead of a timeout (issue 14 item 7).
func TestWrongPortFailsFastWithHint(t *testing.T) {
	r := startTunedRegistrars(t, 1, func(c *enrp.ServerConfig) { c.Transport = "tcp" })[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	u, err := NewPoolUser(WithRegistrars(r.srv.ENRPAddr().String()), WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	start := time.Now()
	_, err = u.Resolve(ctx, "echo")
	if err == nil || !strings.Contains(err.Error(), "ASAP port") {
		t.Fatalf("resolve on the ENRP port: %v, want a hint naming the ASAP port", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v to fail", d)
	}

	start = time.Now()
	_, err = DumpHandlespace(ctx, r.srv.ASAPAddr().String(), WithLogger(quiet()))
	if err == nil || !strings.Contains(err.Error(), "ENRP port") {
		t.Fatalf("dump on the ASAP port: %v, want a hint naming the ENRP port", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v to fail", d)
	}
}

func TestPortHint(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want transport.Protocol
		err  error
		sub  string
	}{
		{"10.0.0.1:9901", transport.ASAP, io.EOF, "is 9901 the ENRP port? use the ASAP port 3863"},
		{"10.0.0.1:3863", transport.ENRP, io.EOF, "is 3863 the ASAP port? use the ENRP port 9901"},
		{"10.0.0.1:4000", transport.ASAP, io.EOF, "is port 4000 the registrar's ASAP port?"},
		{"10.0.0.1:9901", transport.ASAP, context.DeadlineExceeded, ""},
	} {
		got := portHint(tt.addr, tt.want, tt.err)
		if !errors.Is(got, tt.err) {
			t.Errorf("%s: %v does not wrap %v", tt.addr, got, tt.err)
		}
		if tt.sub == "" && got.Error() != tt.err.Error() || !strings.Contains(got.Error(), tt.sub) {
			t.Errorf("%s: %q, want it to contain %q", tt.addr, got, tt.sub)
		}
	}
}
