package enrp

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/msg/msgtest"
)

// sim connects registrar cores and simulated PEs in memory with a fake
// clock: messages are delivered synchronously, so tests drive whole
// protocol exchanges without sockets or sleeps.
type sim struct {
	t     testing.TB
	now   time.Time
	regs  map[uint32]*Core
	order []uint32
	links map[LinkID]*end
	next  LinkID
	pes   map[netip.AddrPort]*simPE
	cut   map[[2]uint32]bool
	// sent counts messages by type name, for assertions on exchanges.
	sent map[string]int
	// tap, when set, sees every delivered message.
	tap func(from, to string, m Message)
}

type end struct {
	reg   uint32 // 0 for a PE end
	pe    *simPE
	other LinkID
	dead  bool
}

type simPE struct {
	handle string
	pe     PoolElement
	home   LinkID
	dead   bool
	acks   int
	resp   []Message
}

// quietLogger discards logs unless ENRP_TEST_LOG is set.
func quietLogger() *slog.Logger {
	if os.Getenv("ENRP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

func testConfig(id uint32) Config {
	return Config{
		ID:                    id,
		ENRP:                  netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", 9000+id)),
		ASAP:                  netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", 3000+id)),
		KeepAliveInterval:     100 * time.Millisecond,
		KeepAliveTimeout:      100 * time.Millisecond,
		PeerHeartbeatCycle:    100 * time.Millisecond,
		PeerMaxTimeLastHeard:  250 * time.Millisecond,
		PeerMaxTimeNoResponse: 100 * time.Millisecond,
		TakeoverExpiry:        200 * time.Millisecond,
		DrainTimeout:          -1,
		Logger:                quietLogger(),
	}
}

func newSim(t testing.TB) *sim {
	return &sim{
		t:     t,
		now:   time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		regs:  map[uint32]*Core{},
		links: map[LinkID]*end{},
		pes:   map[netip.AddrPort]*simPE{},
		cut:   map[[2]uint32]bool{},
		sent:  map[string]int{},
	}
}

// addReg starts a registrar and connects it to every running one.
func (s *sim) addReg(cfg Config) *Core {
	c, err := NewCore(cfg, s.now)
	if err != nil {
		s.t.Fatal(err)
	}
	if len(s.regs) == 0 {
		c.MarkSynced()
	}
	s.regs[cfg.ID] = c
	s.order = append(s.order, cfg.ID)
	for _, id := range s.order {
		if id != cfg.ID {
			s.connect(cfg.ID, id)
		}
	}
	s.pump()
	return c
}

func (s *sim) newLinkPair(a, b *end) (LinkID, LinkID) {
	s.next++
	la := s.next
	s.next++
	lb := s.next
	a.other, b.other = lb, la
	s.links[la], s.links[lb] = a, b
	return la, lb
}

// connect opens an ENRP link from a to b (a dials).
func (s *sim) connect(a, b uint32) {
	la, _ := s.newLinkPair(&end{reg: a}, &end{reg: b})
	s.regs[a].LinkUp(la)
}

// kill stops a registrar: its connections close.
func (s *sim) kill(id uint32) {
	delete(s.regs, id)
	for i, o := range s.order {
		if o == id {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	for l, e := range s.links {
		if e.reg == id && !e.dead {
			e.dead = true
			o := s.links[e.other]
			o.dead = true
			if o.reg != 0 {
				if c := s.regs[o.reg]; c != nil {
					c.LinkDown(e.other)
				}
			}
			_ = l
		}
	}
}

func (s *sim) partitioned(a, b uint32) bool {
	return s.cut[[2]uint32{a, b}] || s.cut[[2]uint32{b, a}]
}

// register makes a PE register with registrar r over a new link.
func (s *sim) register(r uint32, handle string, pe PoolElement) *simPE {
	p := s.pes[pe.ASAP]
	if p == nil {
		p = &simPE{handle: handle, pe: pe}
		s.pes[pe.ASAP] = p
	}
	lp, lr := s.newLinkPair(&end{pe: p}, &end{reg: r})
	p.home = lp
	s.deliver(lr, Registration{Handle: handle, PE: pe})
	s.pump()
	return p
}

// peSend sends m from PE p on its home link.
func (s *sim) peSend(p *simPE, m Message) {
	s.deliver(s.links[p.home].other, m)
	s.pump()
}

func (s *sim) deliver(to LinkID, m Message) {
	e := s.links[to]
	if e == nil || e.dead {
		return
	}
	s.sent[msgName(m)]++
	if e.reg != 0 {
		c := s.regs[e.reg]
		if c == nil {
			return
		}
		from := s.links[e.other]
		if from.reg != 0 && s.partitioned(from.reg, e.reg) {
			return
		}
		if s.tap != nil {
			s.tap(fmt.Sprint(from.reg), fmt.Sprint(e.reg), m)
		}
		c.Step(to, netip.MustParseAddr("127.0.0.1"), m)
		return
	}
	s.peReceive(e.pe, to, m)
}

func (s *sim) peReceive(p *simPE, link LinkID, m Message) {
	if p.dead {
		return
	}
	switch m := m.(type) {
	case EndpointKeepAlive:
		if m.Home {
			p.home = link
		}
		if link != p.home {
			return
		}
		p.acks++
		s.deliver(s.links[link].other, EndpointKeepAliveAck{Handle: m.Handle, PEID: m.PEID})
		if m.Home {
			s.deliver(s.links[link].other, Registration{Handle: p.handle, PE: p.pe})
		}
	default:
		p.resp = append(p.resp, m)
	}
}

// pump delivers everything the cores want sent until nothing is left.
func (s *sim) pump() {
	for i := 0; i < 10000; i++ {
		busy := false
		for _, id := range append([]uint32(nil), s.order...) {
			c := s.regs[id]
			if c == nil {
				continue
			}
			for _, o := range c.Drain() {
				busy = true
				s.route(id, o)
			}
		}
		if !busy {
			return
		}
	}
	s.t.Fatal("sim: messages never settle")
}

func (s *sim) route(from uint32, o Output) {
	switch {
	case o.Announce:
		return
	case o.ConnectPeer:
		for id, c := range s.regs {
			if c.cfg.ENRP == o.Dial && id != from {
				s.connect(from, id)
			}
		}
		return
	}
	if e := s.links[o.Link]; o.Link != 0 && e != nil && !e.dead {
		s.deliver(e.other, o.Msg)
		return
	}
	if p := s.pes[o.Dial]; o.Dial.IsValid() && p != nil && !p.dead {
		_, lr := s.newLinkPair(&end{pe: p}, &end{reg: from})
		s.deliver(s.links[lr].other, o.Msg)
	}
}

// advance moves the clock by d in steps, ticking every registrar.
func (s *sim) advance(d time.Duration) {
	const step = 10 * time.Millisecond
	for end := s.now.Add(d); s.now.Before(end); {
		s.now = s.now.Add(step)
		for _, id := range append([]uint32(nil), s.order...) {
			if c := s.regs[id]; c != nil {
				c.Tick(s.now)
			}
		}
		s.pump()
	}
}

func testPE(id uint32) PoolElement { return msgtest.PE(id) }

// agree asserts every registrar holds n PEs and the same checksum per owner.
func (s *sim) agree(t testing.TB, n int) {
	t.Helper()
	var ref *Core
	for _, id := range s.order {
		c := s.regs[id]
		if c.Count() != n {
			t.Fatalf("registrar %d holds %d PEs, want %d", id, c.Count(), n)
		}
		if ref == nil {
			ref = c
			continue
		}
		for _, o := range s.order {
			if a, b := ref.Checksum(o), c.Checksum(o); a != b {
				t.Fatalf("checksum of %d's PEs: registrar %d has %#x, registrar %d has %#x", o, ref.ID(), a, id, b)
			}
		}
	}
}

func lastResp(p *simPE) Message {
	if len(p.resp) == 0 {
		return nil
	}
	return p.resp[len(p.resp)-1]
}
