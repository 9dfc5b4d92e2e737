package asap

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// A PE serving RSerPool-unaware users (the XDP VIP's clients) passes plain
// bytes both ways, refuses the session-layer calls it cannot honour, and
// still registers and drains like any PE.
func TestUnawareUsersGetPlainBytes(t *testing.T) {
	regs := startRegistrars(t, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pe, err := Register(ctx, "plain", ln, itRegistrars(addrs(regs)...), WithUnawareUsers(), WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer pe.Close()
	served := make(chan error, 1)
	go func() {
		s, err := pe.Accept()
		if err != nil {
			served <- err
			return
		}
		defer s.Close()
		if err := s.SendCookie([]byte("state")); !errors.Is(err, ErrUnawareSession) {
			served <- errors.New("SendCookie on an unaware session did not refuse")
			return
		}
		_, err = io.Copy(s, s) // echo
		served <- err
	}()

	c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	for _, line := range []string{"hello\n", "plain bytes, no framing\n"} {
		if _, err := io.WriteString(c, line); err != nil {
			t.Fatal(err)
		}
		got, err := r.ReadString('\n')
		if err != nil || got != line {
			t.Fatalf("echo of %q: %q, %v", line, got, err)
		}
	}
	c.Close()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if res, err := (func() ([]PEInfo, error) {
		pu, err := NewPoolUser(itRegistrars(addrs(regs)...), WithLogger(quiet()))
		if err != nil {
			return nil, err
		}
		return pu.Resolve(ctx, "plain")
	})(); err != nil || len(res) != 1 || res[0].ID != pe.ID() {
		t.Fatalf("resolution of the unaware PE's pool: %+v, %v", res, err)
	}
}
