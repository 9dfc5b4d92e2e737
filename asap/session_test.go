package asap

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"

	"github.com/rspxdp/rspxdp/msg/msgtest"
	"github.com/rspxdp/rspxdp/wire"
)

func TestSessionFraming(t *testing.T) {
	a, b := net.Pipe()
	pu, pe := newSession(a), newSession(b)
	big := bytes.Repeat([]byte("x"), maxFrameData+10) // split over two frames
	go func() {
		_ = pu.sendCookieEcho([]byte("state-7"))
		_, _ = pu.Write([]byte("hello"))
		_, _ = pu.Write(big)
		pu.Close()
	}()
	c, err := pe.WaitCookieEcho()
	if err != nil || string(c) != "state-7" {
		t.Fatalf("cookie echo %q, %v", c, err)
	}
	got, err := io.ReadAll(pe)
	if err != nil || string(got) != "hello"+string(big) {
		t.Fatalf("read %d bytes, %v; want %d", len(got), err, 5+len(big))
	}

	a, b = net.Pipe()
	pu, pe = newSession(a), newSession(b)
	go func() {
		_ = pe.SendCookie([]byte("c1"))
		_ = pe.SendBusinessCard("backup")
		_, _ = pe.Write([]byte("data"))
		pe.Close()
	}()
	got, _ = io.ReadAll(pu)
	if string(got) != "data" || string(pu.lastCookie()) != "c1\x00\x00" || pu.lastBusinessCard() != "backup" {
		t.Fatalf("data %q cookie %q card %q", got, pu.lastCookie(), pu.lastBusinessCard())
	}

	// A frame shorter than its header is refused.
	a, b = net.Pipe()
	pe = newSession(b)
	go func() { _, _ = a.Write([]byte{0, 0, 0, 2}) }()
	if _, err := pe.Read(make([]byte, 8)); err == nil {
		t.Fatal("bad frame length accepted")
	}
	a.Close()
}

// TestCookiePadded: a Cookie's parameter length is a multiple of 4 whatever
// the cookie's length (rsplib's parser refuses others); the padding is
// zero bytes.
func TestCookiePadded(t *testing.T) {
	for _, cookie := range []string{"", "a", "ab", "abc", "abcd", "pe=$0000002a bytes=5"} {
		a, b := net.Pipe()
		pe := newSession(b)
		go func() {
			_ = pe.SendCookie([]byte(cookie))
			pe.Close()
		}()
		raw, _ := io.ReadAll(a)
		var w wire.Message
		if err := (&wire.Decoder{}).Decode(wire.ASAP, raw, &w); err != nil {
			t.Fatalf("cookie %q: %v", cookie, err)
		}
		if len(raw) < 8 {
			t.Fatalf("cookie %q: %d-byte message", cookie, len(raw))
		}
		if l := binary.BigEndian.Uint16(raw[6:8]); l%4 != 0 {
			t.Errorf("cookie %q: parameter length %d, not a multiple of 4", cookie, l)
		}
		p := w.Param(wire.ParamCookie)
		if p == nil || !bytes.HasPrefix(p.Cookie, []byte(cookie)) || len(bytes.Trim(p.Cookie[len(cookie):], "\x00")) != 0 {
			t.Errorf("cookie %q sent as %q", cookie, p.Cookie)
		}
	}
}

// TestBusinessCardOnTheWire: a Business Card carries the pool handle, the
// pool's policy and at least one Pool Element (rsplib refuses one without):
// the PE itself when the PE names no other.
func TestBusinessCardOnTheWire(t *testing.T) {
	a, b := net.Pipe()
	pe := newSession(b)
	pe.self = msgtest.PE(7)
	go func() {
		_ = pe.SendBusinessCard("backup")
		pe.Close()
	}()
	raw, _ := io.ReadAll(a)
	var w wire.Message
	if err := (&wire.Decoder{}).Decode(wire.ASAP, raw, &w); err != nil {
		t.Fatal(err)
	}
	pools := w.Pools()
	if w.Type != wire.ASAPBusinessCard || string(w.PoolHandle()) != "backup" || w.Param(wire.ParamPolicy) == nil ||
		len(pools) != 1 || len(pools[0].Elements) != 1 || pools[0].Elements[0].ID != 7 {
		t.Fatalf("business card %+v: want pool backup, a policy and PE 7", w)
	}
}

// FuzzSession feeds arbitrary bytes to a session reader: it must never
// panic, and the data it returns must be data frames' bodies.
func FuzzSession(f *testing.F) {
	f.Add([]byte{0, 0, 0, 6, 'h', 'i'})
	f.Add([]byte{0x0b, 0, 0, 4})
	f.Add([]byte{0x0c, 0, 0, 12, 0, 0x0d, 0, 7, 'a', 'b', 'c', 0})
	f.Add([]byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		s := newSession(b)
		go func() {
			_, _ = a.Write(in)
			a.Close()
		}()
		got, _ := io.ReadAll(s)
		if len(got) > len(in) {
			t.Fatalf("read %d bytes out of %d", len(got), len(in))
		}
		s.Close()
	})
}
