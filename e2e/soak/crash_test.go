package soak

import (
	"context"
	"errors"
	"sync"

	"github.com/rspxdp/rspxdp/transport"
)

// errCrashed is what a crashed PE's transport answers.
var errCrashed = errors.New("soak: PE crashed")

// crashSwitch wraps a PE's ASAP transport so the test can make the PE
// vanish as a crashed process would: every connection and listener closes
// at once and nothing new gets through, while the PE's goroutines, which
// a real crash would take with it, are stopped later by Close.
type crashSwitch struct {
	inner transport.Transport

	mu      sync.Mutex
	crashed bool
	conns   map[*switchedConn]struct{}
	lns     []transport.Listener
}

func newCrashSwitch(inner transport.Transport) *crashSwitch {
	return &crashSwitch{inner: inner, conns: map[*switchedConn]struct{}{}}
}

// crash closes everything and refuses what follows.
func (s *crashSwitch) crash() {
	s.mu.Lock()
	s.crashed = true
	conns, lns := s.conns, s.lns
	s.conns, s.lns = map[*switchedConn]struct{}{}, nil
	s.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
	for _, l := range lns {
		l.Close()
	}
}

// track registers c, or closes it if the switch has already been thrown.
func (s *crashSwitch) track(c transport.Conn) (transport.Conn, error) {
	sc := &switchedConn{Conn: c, s: s}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.crashed {
		c.Close()
		return nil, errCrashed
	}
	s.conns[sc] = struct{}{}
	return sc, nil
}

func (s *crashSwitch) Listen(ctx context.Context, addr string) (transport.Listener, error) {
	l, err := s.inner.Listen(ctx, addr)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.crashed {
		l.Close()
		return nil, errCrashed
	}
	s.lns = append(s.lns, l)
	return &switchedListener{Listener: l, s: s}, nil
}

func (s *crashSwitch) Dial(ctx context.Context, addr string) (transport.Conn, error) {
	s.mu.Lock()
	crashed := s.crashed
	s.mu.Unlock()
	if crashed {
		return nil, errCrashed
	}
	c, err := s.inner.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return s.track(c)
}

func (s *crashSwitch) Name() string { return s.inner.Name() }

type switchedListener struct {
	transport.Listener
	s *crashSwitch
}

func (l *switchedListener) Accept(ctx context.Context) (transport.Conn, error) {
	for {
		c, err := l.Listener.Accept(ctx)
		if err != nil {
			return nil, err
		}
		if tc, err := l.s.track(c); err == nil {
			return tc, nil
		}
	}
}

type switchedConn struct {
	transport.Conn
	s *crashSwitch
}

func (c *switchedConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	return c.Conn.Close()
}
