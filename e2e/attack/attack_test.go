package attack

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/security"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
	"github.com/rspxdp/rspxdp/wire"
)

// Targets of issue 19.
const (
	maxRSS     = 512 // MiB, at default limits
	recoverMax = 10 * time.Second
)

// minHonestRate is the share of fresh-connection resolutions that must be
// answered during an attack, in percent: issue 19's 99 in the long run; the
// short run shares the 2-core machine with the other packages' tests under
// `make test`, where the attacker's own dials compete with the PUs for
// CPU, so it asks for 95.
func minHonestRate() float64 {
	if long() {
		return 99
	}
	return 95
}

func testPE(id uint32) msg.PoolElement {
	return msg.PoolElement{
		ID: id, Lifetime: 30 * time.Second, Policy: policy.RoundRobin(),
		Transport: selector.Transport{Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(id >> 8), byte(id)})},
			Port: 7, Protocol: selector.TCP, Use: selector.DataOnly},
	}
}

// source returns the i-th attacker source address: never 127.0.0.1, where
// the honest PUs are, and a new one every perSource connections (an
// attacker with many addresses; one address alone is held to its bound).
func source(i, perSource int) string {
	n := i / perSource
	return fmt.Sprintf("127.%d.%d.%d", 1+n/62500, (n/250)%250, 2+n%250)
}

// attack is one attack on a fresh registrar process.
type attack struct {
	name   string
	args   []string // registrar flags
	prefix []string // command prefix (prlimit)
	// run carries out the attack on r, bounded, and returns a note with
	// what it measured.
	run func(ctx context.Context, t *testing.T, r *registrar) string
	// tls runs the registrar, its PE and the honest PUs over TLS (r.pki).
	tls bool
}

func TestAttacks(t *testing.T) {
	for _, a := range attacks() {
		t.Run(a.name, func(t *testing.T) { runAttack(t, a) })
	}
}

// runAttack runs a on a fresh registrar with one PE of "echo" and two
// honest PUs, over TLS if a.tls, checks the targets and prints the report.
func runAttack(t *testing.T, a attack) {
	r := newRegistrar(t, 1, a.args...)
	r.prefix = a.prefix
	var peCfg, puCfg *tls.Config
	if a.tls {
		r.pki = newPKI(t)
		r.args = append(r.pki.registrarArgs(t, "r1"), r.args...)
		peCfg, puCfg = r.pki.client(t, security.RolePE, "echo-1"), r.pki.client(t, security.RolePU, "honest")
	}
	r.start()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	registerPETLS(ctx, t, r.asap, "echo", testPE(1), peCfg)
	l := honest(ctx, r.asap, "echo", 2, puCfg)
	time.Sleep(300 * time.Millisecond)
	l.reset()
	note := a.run(ctx, t, r)
	rate, n, p99 := l.figures()
	rec := l.recovery(time.Now(), recoverMax)
	rep := report{name: a.name, rss: r.peakRSS(), rate: rate, answers: n, p99: p99, recovered: rec, note: note}
	t.Log(rep)
	fmt.Println(rep)
	if rep.rss > maxRSS {
		t.Errorf("peak RSS %d MiB, want under %d", rep.rss, maxRSS)
	}
	if want := minHonestRate(); rate < want {
		t.Errorf("honest PUs: %.2f%% answered, want at least %.0f%%", rate, want)
	}
	if rec >= recoverMax {
		t.Errorf("honest PUs still failing %v after the attack", recoverMax)
	}
}

func attacks() []attack {
	return []attack{
		{name: "conn-memory", run: connMemory},
		{name: "forged-peers", args: peerTimers, run: forgedPeers},
		{name: "idle-lockout", args: lockoutArgs(), run: idleLockout},
		{name: "fd-exhaustion", prefix: []string{"prlimit", "--nofile=1100:1100"}, run: fdExhaustion},
		{name: "foreign-acks", args: fastTimers, run: foreignAcks},
		{name: "oversized", args: peerTimers, run: oversized},
		{name: "malformed", run: malformed},
	}
}

// redialPause is how long an attacker's connection stays closed before it
// is redialled: the attacker runs in this process, and redialling 10,500
// connections faster measures it starving the honest PUs of this 2-core
// machine's CPU rather than the registrar.
const redialPause = 2 * time.Second

// holdConns keeps n connections of protocol p from attacker sources open,
// each sending first (if not nil) and redialled redialPause after the
// registrar closes it, until ctx ends.
func holdConns(ctx context.Context, p wire.Protocol, addr string, n int, first func(i int) []msg.Message) (dials *atomic.Int64) {
	return holdConnsWith(ctx, n, func(ctx context.Context, i int) (*client, error) {
		return dial(ctx, p, addr, source(i, 400))
	}, first)
}

// holdConnsWith is holdConns with the i-th connection dialled by dialer.
func holdConnsWith(ctx context.Context, n int, dialer func(ctx context.Context, i int) (*client, error),
	first func(i int) []msg.Message) (dials *atomic.Int64) {
	dials = &atomic.Int64{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c, err := dialer(ctx, i)
				dials.Add(1)
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				if first != nil {
					for _, m := range first(i) {
						_ = c.send(ctx, m)
					}
				}
				stop := context.AfterFunc(ctx, func() { c.close() })
				for {
					if _, err := c.c.ReadMessage(ctx); err != nil {
						break
					}
				}
				stop()
				c.close()
				// Reopen, as an attacker keeping n connections open does
				// (not as fast as the loop can spin: that measures this
				// process stealing the honest PUs' CPU on a 2-core box).
				select {
				case <-ctx.Done():
				case <-time.After(redialPause):
				}
			}
		}()
	}
	go func() { wg.Wait() }()
	return dials
}

// Item 1: ENRP connections that never introduce themselves, held and
// reopened. Each took a 65,536-slot queue: 2,500 of them reached 3.1 GB.
func connMemory(ctx context.Context, t *testing.T, r *registrar) string {
	n, hold, cycles := size(2500, 9000), time.Second, size(3, 5)
	if long() {
		hold = 3 * time.Second
	}
	opened := 0
	for range cycles {
		var cs []*client
		for i := range n {
			c, err := dial(ctx, wire.ENRP, r.enrp, source(i, 400))
			if err == nil {
				cs = append(cs, c)
			}
		}
		opened += len(cs)
		time.Sleep(hold)
		for _, c := range cs {
			c.close()
		}
	}
	return fmt.Sprintf("%d ENRP connections held %v and reopened, %d times", n, hold, cycles) +
		fmt.Sprintf(" (%d opened)", opened)
}

// Item 2: one connection announcing 15,000 invented peers, then many
// connections one peer each; their silence would start takeovers
// addressed to each other.
func forgedPeers(ctx context.Context, t *testing.T, r *registrar) string {
	c, err := dial(ctx, wire.ENRP, r.enrp, source(0, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	presence := func(id uint32) msg.Presence {
		return msg.Presence{Header: msg.Header{Sender: id, Receiver: 1}, Checksum: 0xffff,
			Info: msg.ServerInfo{ID: id, ENRP: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.9"), 9901)}}
	}
	go func() { _, _ = c.recv(ctx, func(msg.Message) bool { return false }) }()
	const flood = 15000
	for id := uint32(100); id < 100+flood; id++ {
		if err := c.send(ctx, presence(id)); err != nil {
			break
		}
	}
	conns := size(300, 2000)
	holdConns(ctx, wire.ENRP, r.enrp, conns, func(i int) []msg.Message { return []msg.Message{presence(uint32(100000 + i))} })
	time.Sleep(time.Duration(size(4, 12)) * time.Second) // the invented peers die and are taken over
	return fmt.Sprintf("%d Presences with invented senders on one connection, %d connections one each: %d peers joined, %d takeovers",
		flood, conns, r.log.count("peer joined"), r.log.count("takeover initiated"))
}

func lockoutArgs() []string {
	if long() {
		return nil // the default limits
	}
	return []string{"--max-connections", "1000"}
}

// Item 3: idle ASAP connections filling --max-connections.
func idleLockout(ctx context.Context, t *testing.T, r *registrar) string {
	n := size(1500, 10500)
	actx, cancel := context.WithTimeout(ctx, time.Duration(size(6, 20))*time.Second)
	defer cancel()
	// Half say nothing (as a TLS client that never sends its ClientHello;
	// the first-message timeout clears them), half resolve once and idle,
	// which only eviction can clear.
	speak := func(i int) []msg.Message {
		if i%2 == 0 {
			return nil
		}
		return []msg.Message{msg.HandleResolution{Handle: "echo"}}
	}
	dials := holdConns(actx, wire.ASAP, r.asap, n, speak)
	<-actx.Done()
	return fmt.Sprintf("%d idle ASAP connections held and redialled (%d dials): %d evictions, %d refusals logged (one line per 10 s)",
		n, dials.Load(), r.log.count("connection evicted"), r.log.count("connection refused"))
}

// Item 4: a registrar whose descriptor limit is below two full listeners:
// its bound is lowered to fit, so accept does not fail; and it would back
// off if it did.
func fdExhaustion(ctx context.Context, t *testing.T, r *registrar) string {
	n := size(1500, 4000)
	actx, cancel := context.WithTimeout(ctx, time.Duration(size(5, 20))*time.Second)
	defer cancel()
	cpu0, start := r.cpu(), time.Now()
	dials := holdConns(actx, wire.ASAP, r.asap, n, nil)
	<-actx.Done()
	cpu := r.cpu() - cpu0
	lines, bytes := r.log.snapshot()
	if got := r.log.count("accept failed"); got > 10 {
		t.Errorf("%d accept-failed lines: the accept loop spins", got)
	}
	return fmt.Sprintf("RLIMIT_NOFILE 1100, %d connections (%d dials): %d accept-failed lines, log %d lines / %d bytes, registrar CPU %v in %v",
		n, dials.Load(), r.log.count("accept failed"), lines, bytes, cpu, time.Since(start).Round(time.Second))
}

// Item 5: an attacker answering keep-alives for a PE that died. Only the
// PE's own association counts, so the PE goes within the keep-alive window.
func foreignAcks(ctx context.Context, t *testing.T, r *registrar) string {
	pctx, kill := context.WithCancel(ctx)
	registerPE(pctx, t, r.asap, "victim", testPE(7))
	a, err := dial(ctx, wire.ASAP, r.asap, source(0, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	go func() { _, _ = a.recv(ctx, func(msg.Message) bool { return false }) }()
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for actx.Err() == nil {
			_ = a.send(actx, msg.EndpointKeepAliveAck{Handle: "victim", PEID: 7})
			time.Sleep(50 * time.Millisecond)
		}
	}()
	time.Sleep(time.Second)
	kill() // the PE dies
	died := time.Now()
	for time.Since(died) < 15*time.Second && resolveOnce(ctx, r.asap, "victim") {
		time.Sleep(50 * time.Millisecond)
	}
	stale := time.Since(died)
	if stale > 5*time.Second {
		t.Errorf("dead PE listed for %v while an attacker answered its keep-alives", stale)
	}
	return fmt.Sprintf("dead PE removed %v after it died, despite forged acks every 50 ms", stale.Round(time.Millisecond))
}

// Item 7: messages that would exceed the 16-bit length.
func oversized(ctx context.Context, t *testing.T, r *registrar) string {
	c, err := dial(ctx, wire.ASAP, r.asap, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	go func() { <-ctx.Done(); c.close() }()
	v6 := func(id uint32, i int) netip.Addr {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(id >> 8), byte(id), 14: byte(i >> 8), 15: byte(i)})
	}
	reg := func(handle string, pe msg.PoolElement) msg.RegistrationResponse {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := c.send(rctx, msg.Registration{Handle: handle, PE: pe}); err != nil {
			t.Fatal(err)
		}
		m, err := c.recv(rctx, func(m msg.Message) bool {
			rr, ok := m.(msg.RegistrationResponse)
			return ok && rr.PEID == pe.ID
		})
		if err != nil {
			t.Fatalf("registration of PE %d: %v", pe.ID, err)
		}
		return m.(msg.RegistrationResponse)
	}
	big := testPE(50000)
	big.Transport.Addrs = nil
	for i := range 8186 {
		big.Transport.Addrs = append(big.Transport.Addrs, netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}))
	}
	if rr := reg("big", big); !rr.Reject {
		t.Error("a PE of 8,186 addresses was accepted")
	}
	for id := uint32(1); id <= 128; id++ {
		pe := testPE(1000 + id)
		pe.Transport.Addrs = nil
		for i := range 70 {
			pe.Transport.Addrs = append(pe.Transport.Addrs, v6(id, i))
		}
		if rr := reg("wide", pe); rr.Reject {
			t.Fatalf("PE %d of 70 addresses rejected: %v", pe.ID, rr.Cause)
		}
	}
	huge := size(3000, 3000)
	for id := uint32(1); id <= uint32(huge); id++ {
		if rr := reg("huge", testPE(10000+id)); rr.Reject {
			t.Fatalf("PE %d rejected: %v", id, rr.Cause)
		}
	}
	go func() { _, _ = c.recv(ctx, func(msg.Message) bool { return false }) }() // keep-alives
	// A registrar joining now must receive every PE through table responses.
	start := time.Now()
	j := startRegistrar(t, 2, append([]string{"--peer", r.enrp}, peerTimers...)...)
	want := 1 + 128 + huge
	got := 0
	for time.Since(start) < 20*time.Second {
		if n, err := countPEs(ctx, j.enrp); err == nil {
			got = n
			if n == want {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	synced := time.Since(start)
	if got != want {
		t.Errorf("joining registrar holds %d PEs, want %d", got, want)
	}
	// Resolve all of the 3,000-PE pool: answered, with as many as fit.
	rc, err := dial(ctx, wire.ASAP, r.asap, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.close()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = rc.send(rctx, msg.HandleResolution{Handle: "huge", MaxItems: 0xffffffff})
	m, err := rc.recv(rctx, func(m msg.Message) bool { _, ok := m.(msg.HandleResolutionResponse); return ok })
	answered := 0
	if err != nil {
		t.Errorf("resolve all of %d PEs: %v", huge, err)
	} else {
		answered = len(m.(msg.HandleResolutionResponse).PEs)
	}
	return fmt.Sprintf("8,186-address PE refused; joining registrar synced %d PEs (128 of 70 addresses) in %v; resolve-all of %d answered with %d",
		got, synced.Round(time.Millisecond), huge, answered)
}

// Item 8: a flood of malformed messages, answered at a bounded rate and
// logged at a bounded rate.
func malformed(ctx context.Context, t *testing.T, r *registrar) string {
	n := size(50000, 200000)
	var replies atomic.Int64
	_, bytes0 := r.log.snapshot()
	for _, tc := range []struct {
		p    wire.Protocol
		addr string
		b    []byte
	}{
		{wire.ASAP, r.asap, []byte{0x42, 0, 0, 8, 0, 1, 0, 4}},                 // unknown type
		{wire.ASAP, r.asap, []byte{0x05, 0, 0, 12, 0, 8, 0, 0x40, 1, 2, 3, 4}}, // broken parameter
		{wire.ENRP, r.enrp, []byte{0x33, 0, 0, 12, 0, 0, 0, 7, 0, 0, 0, 1}},    // unknown type
	} {
		c, err := dial(ctx, tc.p, tc.addr, source(0, 1))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				if _, err := c.c.ReadMessage(ctx); err != nil {
					return
				}
				replies.Add(1)
			}
		}()
		if tc.p == wire.ENRP {
			// Introduce the connection first: an unknown first message
			// on the ENRP port would be answered and the rest ignored.
			_ = c.send(ctx, msg.Presence{Header: msg.Header{Sender: 77, Receiver: 1},
				Info: msg.ServerInfo{ID: 77, ENRP: netip.MustParseAddrPort("127.0.0.9:9901")}})
		}
		for range n / 3 {
			if c.sendRaw(ctx, tc.b) != nil {
				break
			}
		}
		time.Sleep(500 * time.Millisecond)
		c.close()
	}
	_, bytes1 := r.log.snapshot()
	logged := bytes1 - bytes0
	if got := replies.Load(); got > int64(n/10) {
		t.Errorf("%d replies to %d malformed messages", got, n)
	}
	if logged > 1<<20 {
		t.Errorf("%d bytes logged for %d malformed messages", logged, n)
	}
	return fmt.Sprintf("%d malformed messages: %d replies (%.3fx), %d bytes logged", n, replies.Load(),
		float64(replies.Load())/float64(n), logged)
}
