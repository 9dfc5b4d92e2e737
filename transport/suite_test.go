package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The behaviour suite: one table of cases, run against every rig (TCP, TLS,
// SCTP where the kernel has it, and SCTP's message path over SEQPACKET).

type behaviour struct {
	name string
	run  func(t *testing.T, r rig)
}

func behaviours() []behaviour {
	return []behaviour{
		{"RoundTripSizes", testRoundTripSizes},
		{"ManyMessagesInOrder", testManyMessages},
		{"ConcurrentWritersDoNotInterleave", testConcurrentWriters},
		{"IdleBetweenMessagesIsFine", testIdleIsFine},
		{"ReadCancelKeepsConnUsable", testReadCancel},
		{"CloseUnblocksRead", testCloseUnblocksRead},
		{"AcceptHonoursContext", testAcceptContext},
		{"RejectsMalformedOutgoing", testRejectsMalformedOutgoing},
		{"CleanCloseIsEOF", testCleanClose},
		{"DialRefusedFailsFast", testDialRefused},
		{"PeerThatStopsReadingTimesOutWriter", testSlowReader},
		{"WildcardListenServesIPv4AndIPv6", testWildcardListen},
		{"BadPeers", testBadPeers},
	}
}

func TestBehaviour(t *testing.T) {
	for _, b := range behaviours() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			forEachRig(t, b.run)
		})
	}
}

func testRoundTripSizes(t *testing.T, r rig) {
	tr := r.transport(t, quietConfig(t, ASAP))
	s := startEcho(t, tr, r.addr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx, s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.RemoteAddr() == nil || c.LocalAddr() == nil {
		t.Errorf("addresses: local %v remote %v", c.LocalAddr(), c.RemoteAddr())
	}
	for _, n := range []int{4, 5, 8, 100, 1500, 4095, 4096, 4097, 20000, MaxMessageSize} {
		want := msg(0x01, n, uint32(n))
		if err := c.WriteMessage(ctx, want); err != nil {
			t.Fatalf("write %d bytes: %v", n, err)
		}
		got, err := c.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %d bytes: %v", n, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: echo differs (got %d bytes)", n, len(got))
		}
	}
}

func testManyMessages(t *testing.T, r rig) {
	tr := r.transport(t, quietConfig(t, ENRP))
	s := startEcho(t, tr, r.addr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx, s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 3000
	werr := make(chan error, 1)
	go func() {
		for i := uint32(0); i < n; i++ {
			if err := c.WriteMessage(ctx, msg(0x05, 8+int(i%300), i)); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	for i := uint32(0); i < n; i++ {
		got, err := c.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		seq, err := checkMsg(got)
		if err != nil {
			t.Fatal(err)
		}
		if seq != i || len(got) != 8+int(i%300) {
			t.Fatalf("message %d: got seq %d size %d", i, seq, len(got))
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
}

func testConcurrentWriters(t *testing.T, r rig) {
	tr := r.transport(t, quietConfig(t, ASAP))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, err := tr.Listen(ctx, r.addr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const writers, each = 8, 200
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		count := map[byte]int{}
		for i := 0; i < writers*each; i++ {
			m, err := c.ReadMessage(ctx)
			if err != nil {
				done <- fmt.Errorf("after %d messages: %w", i, err)
				return
			}
			seq, err := checkMsg(m)
			if err != nil {
				done <- err
				return
			}
			w := m[0]
			if int(seq) != count[w] {
				done <- fmt.Errorf("writer %d: got seq %d, want %d", w, seq, count[w])
				return
			}
			count[w]++
		}
		done <- nil
	}()
	c, err := tr.Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				// Sizes differ per writer and cross the 4 KiB read buffer.
				if err := c.WriteMessage(ctx, msg(byte(w), 8+w*700+i%50, uint32(i))); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A connection quiet for longer than the frame timeout, between messages,
// is healthy: ASAP associations idle for long stretches.
func testIdleIsFine(t *testing.T, r rig) {
	cfg := quietConfig(t, ASAP)
	cfg.FrameTimeout = 100 * time.Millisecond
	tr := r.transport(t, cfg)
	s := startEcho(t, tr, r.addr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx, s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 2; i++ {
		time.Sleep(350 * time.Millisecond) // > 3 frame timeouts of silence
		want := msg(0x0d, 12, uint32(i))
		if err := c.WriteMessage(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := c.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("after idling: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("got % x", got)
		}
	}
}

func testReadCancel(t *testing.T, r rig) {
	tr := r.transport(t, quietConfig(t, ASAP))
	s := startEcho(t, tr, r.addr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx, s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Deadline expiry and explicit cancellation both return ctx's error
	// and leave the connection usable.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = c.ReadMessage(short)
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read with expiring ctx: %v, want DeadlineExceeded", err)
	}
	cctx, cancelC := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, cancelC)
	_, err = c.ReadMessage(cctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read with cancelled ctx: %v, want Canceled", err)
	}
	want := msg(0x0c, 30, 7)
	if err := c.WriteMessage(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := c.ReadMessage(ctx)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after cancellations: % x, %v", got, err)
	}
}

func testCloseUnblocksRead(t *testing.T, r rig) {
	tr := r.transport(t, quietConfig(t, ASAP))
	s := startEcho(t, tr, r.addr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx, s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := c.ReadMessage(ctx); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("read succeeded on a closed connection")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock ReadMessage")
	}
}

func testAcceptContext(t *testing.T, r rig) {
	tr := r.transport(t, quietConfig(t, ENRP))
	ln, err := tr.Listen(context.Background(), r.addr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := ln.Accept(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("accept with expiring ctx: %v", err)
	}
	// The listener still works after a cancelled Accept.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	go func() {
		c, err := tr.Dial(ctx2, ln.Addr().String())
		if err == nil {
			c.WriteMessage(ctx2, msg(1, 8, 1))
			defer c.Close()
			c.ReadMessage(ctx2)
		}
	}()
	c, err := ln.Accept(ctx2)
	if err != nil {
		t.Fatalf("accept after cancelled accept: %v", err)
	}
	if _, err := c.ReadMessage(ctx2); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Close unblocks a waiting Accept.
	errc := make(chan error, 1)
	go func() { _, err := ln.Accept(context.Background()); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	ln.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("accept on closed listener: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Accept")
	}
}

func testRejectsMalformedOutgoing(t *testing.T, r rig) {
	tr := r.transport(t, quietConfig(t, ASAP))
	s := startEcho(t, tr, r.addr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx, s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wrongLen := msg(1, 20, 1)
	binary.BigEndian.PutUint16(wrongLen[2:], 10)
	for name, m := range map[string][]byte{"short": {1, 0, 0}, "length field wrong": wrongLen, "too big": make([]byte, MaxMessageSize+1)} {
		if err := c.WriteMessage(ctx, m); err == nil {
			t.Errorf("%s: WriteMessage accepted it", name)
		}
	}
	// Nothing reached the wire: the connection still round-trips.
	want := msg(2, 16, 2)
	if err := c.WriteMessage(ctx, want); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ReadMessage(ctx); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after rejected writes: % x %v", got, err)
	}
}

// Dialling a port nobody listens on fails at once with ECONNREFUSED (SCTP:
// the peer's ABORT), not when the context runs out.
func testDialRefused(t *testing.T, r rig) {
	tr := r.transport(t, quietConfig(t, ASAP))
	ln, err := tr.Listen(context.Background(), r.addr(t))
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx, addr)
	if err == nil {
		c.Close()
		t.Fatal("dial to a closed port succeeded")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial to a closed port: %v, want ECONNREFUSED", err)
	}
}

// ":port" (what DefaultAddr("") gives) must serve IPv4 and IPv6 clients,
// and an IPv6 literal must work on its own.
func testWildcardListen(t *testing.T, r rig) {
	if r.name == "seqpacket" {
		t.Skip("no IP addresses on AF_UNIX")
	}
	tr := r.transport(t, quietConfig(t, ENRP))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		listen string
		dial   []string
	}{
		{":0", []string{"127.0.0.1", "::1"}},
		{"[::1]:0", []string{"::1"}},
	} {
		ln, err := tr.Listen(ctx, tc.listen)
		if err != nil {
			t.Fatalf("listen %s: %v", tc.listen, err)
		}
		startEchoOn(t, ln)
		_, port, err := net.SplitHostPort(ln.Addr().String())
		if err != nil {
			t.Fatalf("listener address %v: %v", ln.Addr(), err)
		}
		for _, host := range tc.dial {
			if err := roundTrips(ctx, tr, net.JoinHostPort(host, port), 3, 1); err != nil {
				t.Errorf("listen %s, dial %s: %v", tc.listen, host, err)
			}
		}
	}
}

// A peer that stops reading must not block a writer for ever: once the
// socket buffers fill, WriteMessage fails after WriteTimeout.
func testSlowReader(t *testing.T, r rig) {
	cfg := quietConfig(t, ASAP)
	cfg.WriteTimeout = 300 * time.Millisecond
	tr := r.transport(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, err := tr.Listen(ctx, r.addr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Dial from another goroutine: a TLS peer's handshake needs the
	// server's, which runs in its first WriteMessage below.
	peerc := make(chan rawPeer, 1)
	go func() { peerc <- r.rawDial(t, ln.Addr().String()) }() // never reads
	c, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer func() {
		select {
		case p := <-peerc:
			p.close()
		case <-time.After(5 * time.Second):
		}
	}()
	m := msg(0x0b, MaxMessageSize, 1)
	start := time.Now()
	for i := 0; i < 5000; i++ { // far more than any socket buffer holds
		if err = c.WriteMessage(ctx, m); err != nil {
			break
		}
	}
	if err == nil {
		t.Fatal("5000 x 64 KiB written to a peer that reads nothing")
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a stuck peer: %v, want a deadline error", err)
	}
	t.Logf("writer released after %v: %v", time.Since(start).Round(time.Millisecond), err)
}

func testCleanClose(t *testing.T, r rig) {
	tr := r.transport(t, quietConfig(t, ASAP))
	s := startEcho(t, tr, r.addr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := roundTrips(ctx, tr, s.ln.Addr().String(), 3, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.ended:
		if err != nil {
			t.Fatalf("server saw %v for a clean close, want io.EOF", err)
		}
	case <-ctx.Done():
		t.Fatal("server never saw the close")
	}
}

// badPeer is one way to misbehave. send writes the offence; want is the
// sentinel the server must report.
type badPeer struct {
	name string
	// applies says whether the offence exists on this rig.
	applies func(r rig) bool
	cfg     func(*Config)
	send    func(p rawPeer) error
	want    error
}

func always(rig) bool       { return true }
func streamOnly(r rig) bool { return r.stream }
func messageOnly(r rig) bool {
	return !r.stream
}

func badPeers() []badPeer {
	header := func(n int) []byte { return []byte{0x01, 0, byte(n >> 8), byte(n)} }
	return []badPeer{
		{name: "LengthBelowHeader", applies: always, want: ErrBadLength,
			send: func(p rawPeer) error { return p.send(append(header(2), 0xde, 0xad, 0xbe, 0xef), PPIDASAP) }},
		{name: "ZeroLength", applies: always, want: ErrBadLength,
			send: func(p rawPeer) error { return p.send(make([]byte, 8), PPIDASAP) }},
		{name: "Oversized", applies: always, want: ErrOversized,
			cfg: func(c *Config) { c.MaxMessageSize = 1024 },
			send: func(p rawPeer) error {
				m := msg(1, 2000, 1)
				return p.send(m, PPIDASAP)
			}},
		{name: "OversizedHeaderOnly", applies: streamOnly, want: ErrOversized,
			// Refused on the header alone: the 60000 bytes never come.
			cfg:  func(c *Config) { c.MaxMessageSize = 1024 },
			send: func(p rawPeer) error { return p.send(header(60000), PPIDASAP) }},
		{name: "TruncatedBody", applies: streamOnly, want: ErrTruncated,
			send: func(p rawPeer) error {
				if err := p.send(append(header(100), make([]byte, 10)...), PPIDASAP); err != nil {
					return err
				}
				p.close()
				return nil
			}},
		{name: "TruncatedHeader", applies: streamOnly, want: ErrTruncated,
			send: func(p rawPeer) error {
				if err := p.send([]byte{0x01, 0x00}, PPIDASAP); err != nil {
					return err
				}
				p.close()
				return nil
			}},
		{name: "StallsMidBody", applies: streamOnly, want: ErrStalled,
			cfg:  func(c *Config) { c.FrameTimeout = 300 * time.Millisecond },
			send: func(p rawPeer) error { return p.send(append(header(100), make([]byte, 10)...), PPIDASAP) }},
		{name: "StallsMidHeader", applies: streamOnly, want: ErrStalled,
			cfg:  func(c *Config) { c.FrameTimeout = 300 * time.Millisecond },
			send: func(p rawPeer) error { return p.send([]byte{0x01}, PPIDASAP) }},
		{name: "IdleTimeout", applies: always, want: ErrIdle,
			// Long enough that well-behaved clients on a slow (emulated)
			// machine never come near it.
			cfg:  func(c *Config) { c.IdleTimeout = time.Second },
			send: func(rawPeer) error { return nil }},
		{name: "LengthFieldDisagrees", applies: messageOnly, want: ErrLengthMismatch,
			send: func(p rawPeer) error {
				m := msg(1, 40, 1)
				binary.BigEndian.PutUint16(m[2:], 20)
				return p.send(m, PPIDASAP)
			}},
		{name: "WrongPPID", applies: func(r rig) bool { return r.hasPPID }, want: ErrWrongPPID,
			send: func(p rawPeer) error { return p.send(msg(1, 16, 1), PPIDENRP) }},
	}
}

// testBadPeers runs every offence against a live listener while
// well-behaved clients are served concurrently, and checks that the
// offender alone is cut off, with the right typed error.
func testBadPeers(t *testing.T, r rig) {
	for _, bp := range badPeers() {
		if !bp.applies(r) {
			continue
		}
		t.Run(bp.name, func(t *testing.T) {
			cfg := quietConfig(t, ASAP)
			if bp.cfg != nil {
				bp.cfg(&cfg)
			}
			tr := r.transport(t, cfg)
			s := startEcho(t, tr, r.addr(t))
			addr := s.ln.Addr().String()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			bad := r.rawDial(t, addr)
			defer bad.close()
			start := time.Now()
			if err := bp.send(bad); err != nil {
				t.Fatalf("misbehaving peer could not send: %v", err)
			}

			// Good clients, concurrently, while the offender misbehaves.
			const good = 4
			var wg sync.WaitGroup
			goodErr := make(chan error, good)
			for i := 0; i < good; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					goodErr <- roundTrips(ctx, tr, addr, 50, uint32(i*1000))
				}()
			}
			wg.Wait()
			close(goodErr)
			for err := range goodErr {
				if err != nil {
					t.Errorf("well-behaved client failed: %v", err)
				}
			}

			// Exactly one connection ended with an error: the offender's.
			var offence error
			deadline := time.After(10 * time.Second)
			for offence == nil {
				select {
				case err := <-s.ended:
					offence = err
				case <-deadline:
					t.Fatal("the misbehaving connection was never closed")
				}
			}
			if !errors.Is(offence, bp.want) {
				t.Fatalf("server error %v, want %v", offence, bp.want)
			}
			var fe *FrameError
			if !errors.As(offence, &fe) || fe.Remote == nil {
				t.Fatalf("server error %T %v is not a *FrameError with the peer's address", offence, offence)
			}
			t.Logf("server closed the offender after %v: %v", time.Since(start).Round(time.Millisecond), offence)
			if err := bad.waitClosed(5 * time.Second); err != nil {
				t.Fatalf("offender's side: %v", err)
			}
			// The listener still serves newcomers afterwards.
			if err := roundTrips(ctx, tr, addr, 3, 99); err != nil {
				t.Fatalf("new client after the offence: %v", err)
			}
		})
	}
}
