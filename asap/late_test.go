package asap

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/testenv"
)

// delayProxy forwards TCP connections to target; the first connection's
// bytes from the client are held back for delay, as a lost packet's
// retransmission holds them (SCTP's first RTO is 3 s).
func delayProxy(t *testing.T, target string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var once sync.Once
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			d := time.Duration(0)
			once.Do(func() { d = delay })
			go func() {
				defer s.Close()
				buf := make([]byte, 64<<10)
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				time.Sleep(d)
				if _, err := s.Write(buf[:n]); err != nil {
					return
				}
				io.Copy(s, c)
			}()
			go func() {
				defer c.Close()
				io.Copy(c, s)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestLateRegistrationConverges: a PE's Registration reaches its first
// registrar only after the PE gave up on it and registered with the next;
// the late one must not leave the PE without a home or missing anywhere.
func TestLateRegistrationConverges(t *testing.T) {
	rs := startTunedRegistrars(t, 3, nil)
	late := delayProxy(t, rs[1].addr(), 3*testenv.Scaled(500*time.Millisecond))
	var pes []*echoPE
	for i := 0; i < 4; i++ {
		list := []string{rs[0].addr(), rs[1].addr(), rs[2].addr()}
		if i == 1 {
			list = []string{late, rs[2].addr(), rs[0].addr()}
		}
		pes = append(pes, startEchoPE(t, "echo", list))
	}
	waitFor(t, 5*time.Second, "registered and replicated", func() bool {
		return registeredEverywhere(pes, rs, 4) == ""
	}, func() string { return registeredEverywhere(pes, rs, 4) })
	time.Sleep(testenv.Scaled(500*time.Millisecond) * 8)
	if why := registeredEverywhere(pes, rs, 4); why != "" {
		t.Fatalf("after the late registration: %s", why)
	}
}
