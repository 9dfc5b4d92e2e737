package enrp

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
	"github.com/rspxdp/rspxdp/transport"
	"github.com/rspxdp/rspxdp/wire"
)

// testClient is a minimal PE (or PU) speaking ASAP over the real transport,
// built from the wire codec: it registers, answers keep-alives on its home
// connection and follows a takeover (a keep-alive with the home flag on a
// connection the new registrar opened) by re-registering there.
type testClient struct {
	t      testing.TB
	tr     transport.Transport
	handle string
	pe     PoolElement
	ln     transport.Listener

	mu    sync.Mutex
	home  transport.Conn
	homeR uint32 // server id of the home registrar, learned from keep-alives
	resp  chan Message
	acks  atomic.Int64
	dead  atomic.Bool
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

// newTCP returns the ASAP transport of test PEs: TCP, or what
// RSPXDP_TEST_TRANSPORT names, as the registrars under test use.
func newTCP(t testing.TB) transport.Transport {
	tr, err := transport.New(testenv.Transport(), transport.Config{Protocol: transport.ASAP, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// startPE listens for takeover connections, then registers at registrar addr.
func startPE(t testing.TB, registrar string, handle string, id uint32) *testClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &testClient{t: t, tr: newTCP(t), handle: handle, resp: make(chan Message, 64), ctx: ctx, stop: cancel}
	ln, err := c.tr.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.ln = ln
	asap := netip.MustParseAddrPort(ln.Addr().String())
	c.pe = PoolElement{
		ID:       id,
		Lifetime: 60 * time.Second,
		Transport: selector.Transport{
			Addrs:    []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			Port:     asap.Port(), // any port of ours identifies the PE's service
			Protocol: selector.TCP,
		},
		ASAP:   asap,
		Policy: policy.RoundRobin(),
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			c.wg.Add(1)
			go c.serve(conn)
		}
	}()
	if err := c.connect(registrar); err != nil {
		t.Fatalf("PE %d: %v", id, err)
	}
	return c
}

func (c *testClient) connect(registrar string) error {
	conn, err := c.tr.Dial(c.ctx, registrar)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.home = conn
	c.mu.Unlock()
	c.wg.Add(1)
	go c.serve(conn)
	return c.send(conn, Registration{Handle: c.handle, PE: c.pe})
}

func (c *testClient) send(conn transport.Conn, m Message) error {
	b, err := Encode(m)
	if err != nil {
		return err
	}
	return conn.WriteMessage(c.ctx, b)
}

func (c *testClient) serve(conn transport.Conn) {
	defer c.wg.Done()
	defer conn.Close()
	for {
		b, err := conn.ReadMessage(c.ctx)
		if err != nil {
			return
		}
		if c.dead.Load() {
			continue
		}
		m, err := Decode(wire.ASAP, b)
		if err != nil {
			c.t.Errorf("PE %d: %v", c.pe.ID, err)
			return
		}
		switch m := m.(type) {
		case EndpointKeepAlive:
			c.mu.Lock()
			if m.Home && c.home != conn {
				old := c.home
				c.home = conn
				if old != nil {
					old.Close()
				}
			}
			isHome := c.home == conn
			if isHome {
				c.homeR = m.ServerID
			}
			c.mu.Unlock()
			if !isHome {
				continue
			}
			c.acks.Add(1)
			_ = c.send(conn, EndpointKeepAliveAck{Handle: m.Handle, PEID: m.PEID})
			if m.Home {
				_ = c.send(conn, Registration{Handle: c.handle, PE: c.pe})
			}
		default:
			select {
			case c.resp <- m:
			default:
			}
		}
	}
}

// kill makes the PE stop answering and drops its connections.
func (c *testClient) kill() {
	c.dead.Store(true)
	c.stop()
	c.ln.Close()
	c.mu.Lock()
	if c.home != nil {
		c.home.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *testClient) homeID() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.homeR
}

func (c *testClient) await(t testing.TB) Message {
	t.Helper()
	select {
	case m := <-c.resp:
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("PE %d: no response", c.pe.ID)
		return nil
	}
}

// rpc is a PU-style request/response client on one connection.
type rpc struct {
	conn transport.Conn
	dec  wire.Decoder
	w    wire.Message // reused: decoding into it does not allocate
}

func dialRPC(t testing.TB, addr string) *rpc {
	t.Helper()
	conn, err := newTCP(t).Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	return &rpc{conn: conn}
}

func (r *rpc) call(ctx context.Context, m Message) (Message, error) {
	b, err := Encode(m)
	if err != nil {
		return nil, err
	}
	if err := r.conn.WriteMessage(ctx, b); err != nil {
		return nil, err
	}
	for {
		b, err := r.conn.ReadMessage(ctx)
		if err != nil {
			return nil, err
		}
		if err := r.dec.Decode(wire.ASAP, b, &r.w); err != nil {
			return nil, err
		}
		resp, err := FromWire(&r.w)
		if err != nil {
			return nil, err
		}
		if _, ka := resp.(EndpointKeepAlive); ka {
			continue
		}
		return resp, nil
	}
}

var errTimeout = errors.New("condition not met in time")

// eventually polls cond every 5 ms until it holds or d passes.
func eventually(d time.Duration, cond func() bool) (time.Duration, error) {
	d = testenv.Scaled(d)
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), nil
		}
		if time.Since(start) > d {
			return time.Since(start), errTimeout
		}
		time.Sleep(5 * time.Millisecond)
	}
}
