package transport

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// portOf returns the port of a transport address ("ip:port", "[ip]:port",
// "ip1/ip2:port").
func portOf(t *testing.T, a net.Addr) int {
	t.Helper()
	if a == nil {
		t.Fatal("no address")
	}
	s := a.String()
	i := bytes.LastIndexByte([]byte(s), ':')
	p, err := strconv.Atoi(s[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("address %q has no port", s)
	}
	return p
}

// With DialFromListener an SCTP association leaves from the listener's
// port, which is what rsplib checks an ENRP Presence against; without it
// the port is an ephemeral one. Sharing the port must not cost the
// listener anything: it still accepts associations from third parties, and
// the dialled association carries messages both ways.
func TestSCTPDialFromListener(t *testing.T) {
	requireSCTP(t)
	for _, tc := range []struct {
		name, listen string
		fromListener bool
	}{
		{name: "ephemeral", listen: "127.0.0.1:0"},
		{name: "listener address", listen: "127.0.0.1:0", fromListener: true},
		{name: "wildcard listener", listen: ":0", fromListener: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			newSide := func(fromListener bool) (*SCTP, Listener) {
				cfg := quietConfig(t, ENRP)
				cfg.DialFromListener = fromListener
				tr, err := NewSCTP(cfg)
				if err != nil {
					t.Fatal(err)
				}
				ln, err := tr.Listen(ctx, tc.listen)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				return tr, ln
			}
			a, aLn := newSide(tc.fromListener)
			_, bLn := newSide(false)
			bPort := portOf(t, bLn.Addr())

			accepted := make(chan Conn, 1)
			go func() {
				c, err := bLn.Accept(ctx)
				if err != nil {
					t.Errorf("accept: %v", err)
					close(accepted)
					return
				}
				accepted <- c
			}()
			c, err := a.Dial(ctx, "127.0.0.1:"+strconv.Itoa(bPort))
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			in, ok := <-accepted
			if !ok {
				t.FailNow()
			}
			defer in.Close()
			src, aPort := portOf(t, in.RemoteAddr()), portOf(t, aLn.Addr())
			if tc.fromListener != (src == aPort) {
				t.Fatalf("association from port %d, listener on %d: want them equal %v", src, aPort, tc.fromListener)
			}
			if got := portOf(t, c.LocalAddr()); got != src {
				t.Errorf("dialler's local port %d, peer sees %d", got, src)
			}
			for i, pair := range [][2]Conn{{c, in}, {in, c}} {
				want := msg(1, 20, uint32(i))
				if err := pair[0].WriteMessage(ctx, want); err != nil {
					t.Fatal(err)
				}
				got, err := pair[1].ReadMessage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("message %d: got % x, want % x", i, got, want)
				}
			}
			// The listener whose port the association shares still
			// answers a third party.
			startEchoOn(t, aLn)
			third, err := NewSCTP(quietConfig(t, ENRP))
			if err != nil {
				t.Fatal(err)
			}
			if err := roundTrips(ctx, third, "127.0.0.1:"+strconv.Itoa(aPort), 3, 0); err != nil {
				t.Fatalf("third party to the shared listener: %v", err)
			}
		})
	}
}

// Without a listener there is no port to dial from: Dial says so instead of
// silently using an ephemeral one.
func TestSCTPDialFromListenerNeedsListener(t *testing.T) {
	requireSCTP(t)
	cfg := quietConfig(t, ENRP)
	cfg.DialFromListener = true
	tr, err := NewSCTP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx, "127.0.0.1:9")
	if err == nil {
		c.Close()
		t.Fatal("Dial without a listener succeeded")
	}
	if !strings.Contains(err.Error(), "no listener") {
		t.Fatalf("Dial without a listener: %v, want it to say there is no listener", err)
	}
}
