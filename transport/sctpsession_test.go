package transport

import (
	"context"
	"errors"
	"io"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSCTPSession: a session association carries data and ASAP control
// messages told apart by PPID (data 0, ASAP 11, as rsplib's session
// layer), Read skips the control ones, a graceful close reads as io.EOF and
// an ABORT as ECONNRESET (failure evidence for a pool user).
func TestSCTPSession(t *testing.T) {
	requireSCTP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ln, err := ListenSession(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if n := ln.Addr().Network(); n != "sctp" {
		t.Fatalf("listener network %q, want sctp", n)
	}
	accepted := make(chan *SessionConn, 1)
	go func() {
		c, err := ln.AcceptSession(ctx)
		if err != nil {
			t.Error(err)
			close(accepted)
			return
		}
		accepted <- c
	}()
	pu, err := DialSession(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer pu.Close()
	pe := <-accepted
	if pe == nil {
		t.FailNow()
	}
	defer pe.Close()

	cookie := []byte{0x0b, 0, 0, 8, 0, 7, 0, 4} // an ASAP Cookie, empty cookie
	if err := pu.WriteMsg([]byte("hello"), PPIDSessionData); err != nil {
		t.Fatal(err)
	}
	if err := pu.WriteMsg(cookie, PPIDASAP); err != nil {
		t.Fatal(err)
	}
	if _, err := pu.Write([]byte("world")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for _, want := range []struct {
		ppid uint32
		body string
	}{{PPIDSessionData, "hello"}, {PPIDASAP, string(cookie)}, {PPIDSessionData, "world"}} {
		n, ppid, eor, err := pe.ReadMsg(buf)
		if err != nil {
			t.Fatal(err)
		}
		if ppid != want.ppid || string(buf[:n]) != want.body || !eor {
			t.Fatalf("read %q PPID %d eor %v, want %q PPID %d", buf[:n], ppid, eor, want.body, want.ppid)
		}
	}
	// Read returns data only.
	_ = pe.WriteMsg(cookie, PPIDASAP)
	_, _ = pe.Write([]byte("answer"))
	n, err := pu.Read(buf)
	if err != nil || string(buf[:n]) != "answer" {
		t.Fatalf("Read %q, %v; want the data after the control message", buf[:n], err)
	}
	// A deadline ends a Read.
	_ = pu.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := pu.Read(buf); !errors.Is(err, syscall.ETIMEDOUT) && !isTimeout(err) {
		t.Fatalf("Read past the deadline: %v", err)
	}
	_ = pu.SetReadDeadline(time.Time{})

	// Graceful close: io.EOF.
	pu.Close()
	if _, _, _, err := pe.ReadMsg(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("after the peer's close: %v, want io.EOF", err)
	}

	// ABORT (close with a zero linger): ECONNRESET.
	go func() {
		c, err := ln.AcceptSession(ctx)
		if err == nil {
			accepted <- c
		}
	}()
	pu2, err := DialSession(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	pe2 := <-accepted
	defer pe2.Close()
	abortSession(t, pu2)
	if _, _, _, err := pe2.ReadMsg(buf); !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("after the peer's ABORT: %v, want ECONNRESET", err)
	}
}

// abortSession closes s with SO_LINGER 0, which SCTP sends as an ABORT.
func abortSession(t *testing.T, s *SessionConn) {
	t.Helper()
	var serr error
	if err := s.c.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}); err != nil || serr != nil {
		t.Fatalf("SO_LINGER: %v %v", err, serr)
	}
	s.Close()
}
