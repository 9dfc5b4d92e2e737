package enrp

import (
	"context"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
)

// TestSamePEComparesEveryField: changing any one field of a Pool Element
// makes it a different answer, and a field added to PoolElement or to its
// transport fails this test until samePE compares it.
func TestSamePEComparesEveryField(t *testing.T) {
	if n := reflect.TypeFor[PoolElement]().NumField(); n != 9 {
		t.Fatalf("PoolElement has %d fields, samePE compares 9: compare the new one", n)
	}
	if n := reflect.TypeFor[selector.Transport]().NumField(); n != 4 {
		t.Fatalf("selector.Transport has %d fields, samePE compares 4: compare the new one", n)
	}
	base := testPE(7)
	base.Home, base.Owner, base.Epoch = 3, "pe.test", 99
	for _, tc := range []struct {
		field  string
		change func(*PoolElement)
	}{
		{"ID", func(p *PoolElement) { p.ID++ }},
		{"Home", func(p *PoolElement) { p.Home++ }},
		{"Lifetime", func(p *PoolElement) { p.Lifetime += time.Second }},
		{"Transport.Addrs (value)", func(p *PoolElement) { p.Transport.Addrs = []netip.Addr{netip.MustParseAddr("10.9.9.9")} }},
		{"Transport.Addrs (one more)", func(p *PoolElement) {
			p.Transport.Addrs = append(slices.Clone(p.Transport.Addrs), netip.MustParseAddr("10.9.9.9"))
		}},
		{"Transport.Port", func(p *PoolElement) { p.Transport.Port++ }},
		{"Transport.Protocol", func(p *PoolElement) { p.Transport.Protocol = selector.SCTP }},
		{"Transport.Use", func(p *PoolElement) { p.Transport.Use = selector.DataAndControl }},
		{"ASAP", func(p *PoolElement) { p.ASAP = netip.MustParseAddrPort("10.9.9.9:1") }},
		{"ASAPProtocol", func(p *PoolElement) { p.ASAPProtocol = selector.SCTP }},
		{"Policy", func(p *PoolElement) { p.Policy.Load++ }},
		{"Owner", func(p *PoolElement) { p.Owner = "other.test" }},
		{"Epoch", func(p *PoolElement) { p.Epoch++ }},
	} {
		a, b := base, base
		b.Transport.Addrs = slices.Clone(base.Transport.Addrs)
		if !samePE(&a, &b) {
			t.Fatalf("%s: equal copies differ", tc.field)
		}
		tc.change(&b)
		if samePE(&a, &b) {
			t.Errorf("%s changed, samePE still true", tc.field)
		}
	}
}

// TestAnswerCacheReusesOnlyEqualAnswers: an answer equal in every value to
// a kept one is the kept bytes; any difference is encoded anew and is what
// the encoder makes of it.
func TestAnswerCacheReusesOnlyEqualAnswers(t *testing.T) {
	var c answerCache
	var enc msg.Encoder
	r := HandleResolutionResponse{Handle: "p", PolicyType: uint32(policy.TypeRoundRobin), PEs: []PoolElement{testPE(1), testPE(2)}}
	b1, err := c.encode(&enc, r)
	if err != nil {
		t.Fatal(err)
	}
	same := cloneAnswer(r)
	b2, _ := c.encode(&enc, same)
	if &b1[0] != &b2[0] {
		t.Error("an equal answer was encoded again")
	}
	for _, change := range []func(*HandleResolutionResponse){
		func(r *HandleResolutionResponse) { r.PEs[0], r.PEs[1] = r.PEs[1], r.PEs[0] }, // another order
		func(r *HandleResolutionResponse) { r.PEs[1].Transport.Addrs[0] = netip.MustParseAddr("10.8.8.8") },
		func(r *HandleResolutionResponse) { r.PEs = r.PEs[:1] },
		func(r *HandleResolutionResponse) { r.PolicyType = uint32(policy.TypeRandom) },
		func(r *HandleResolutionResponse) { r.Handle = "q" },
	} {
		d := cloneAnswer(r)
		change(&d)
		got, err := c.encode(&enc, d)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := Encode(d)
		if !slices.Equal(got, want) {
			t.Errorf("changed answer %+v: got % x, want % x", d, got, want)
		}
	}
	// The kept copy does not share the caller's slices: changing them
	// afterwards changes nothing kept.
	r.PEs[0].Transport.Addrs[0] = netip.MustParseAddr("10.7.7.7")
	got, _ := c.encode(&enc, r)
	want, _ := Encode(r)
	if !slices.Equal(got, want) {
		t.Error("a kept answer shares the addresses it was made from")
	}
}

// TestAnswerCacheFollowsHandlespace: through a running registrar, answers
// to the same resolution repeated (kept and reused) follow every change of
// the pool at once: a PE re-registered with another weight and another
// address, a PE deregistered, a PE added.
func TestAnswerCacheFollowsHandlespace(t *testing.T) {
	cfg := itConfig(1)
	cfg.KeepAliveInterval, cfg.KeepAliveTimeout = time.Minute, time.Minute
	n := startNode(t, cfg)
	step := func(m Message) {
		n.srv.mu.Lock()
		n.srv.core.Step(0, netip.Addr{}, m)
		n.srv.core.Drain()
		n.srv.mu.Unlock()
	}
	pe := func(id, weight uint32, addrs ...string) PoolElement {
		p := testPE(id)
		p.Policy = policy.WeightedRoundRobin(weight)
		for _, a := range addrs {
			p.Transport.Addrs = append(p.Transport.Addrs, netip.MustParseAddr(a))
		}
		return p
	}
	step(Registration{Handle: "cache", PE: pe(1, 1)})
	step(Registration{Handle: "cache", PE: pe(2, 1)})
	r := dialRPC(t, n.srv.ASAPAddr().String())
	defer r.conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// resolve asks 6 times (every order of the pool, kept answers reused)
	// and returns what the answers said of each PE; they must agree.
	resolve := func(what string) map[uint32]PoolElement {
		t.Helper()
		seen := map[uint32]PoolElement{}
		for range 6 {
			m, err := r.call(ctx, HandleResolution{Handle: "cache", MaxItems: msg.MaxItemsAll})
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			resp, ok := m.(HandleResolutionResponse)
			if !ok || resp.Cause != 0 {
				t.Fatalf("%s: answer %#v", what, m)
			}
			ids := map[uint32]bool{}
			for _, p := range resp.PEs {
				ids[p.ID] = true
				if old, ok := seen[p.ID]; ok && !samePE(&old, &p) {
					t.Fatalf("%s: PE 0x%08x answered as %+v and as %+v", what, p.ID, old, p)
				}
				seen[p.ID] = p
			}
			if len(ids) != len(seen) {
				t.Fatalf("%s: an answer named %v of %d PEs", what, ids, len(seen))
			}
		}
		return seen
	}
	got := resolve("two PEs")
	if len(got) != 2 || got[1].Policy.Weight != 1 {
		t.Fatalf("two PEs: %+v", got)
	}
	step(Registration{Handle: "cache", PE: pe(1, 5)})
	if got = resolve("PE 1 re-registered, weight 5"); len(got) != 2 || got[1].Policy.Weight != 5 {
		t.Fatalf("PE 1 re-registered with weight 5, answers say %+v", got[1])
	}
	step(Registration{Handle: "cache", PE: pe(1, 5, "10.0.0.99")})
	got = resolve("PE 1 re-registered, second address")
	if len(got) != 2 || !slices.Contains(got[1].Transport.Addrs, netip.MustParseAddr("10.0.0.99")) {
		t.Fatalf("PE 1 re-registered with a second address, answers say %+v", got[1])
	}
	step(Deregistration{Handle: "cache", PEID: 2})
	if got = resolve("PE 2 deregistered"); len(got) != 1 || got[1].ID != 1 {
		t.Fatalf("PE 2 deregistered, answers name %v", slices.Collect(maps.Keys(got)))
	}
	step(Registration{Handle: "cache", PE: pe(3, 2)})
	if got = resolve("PE 3 registered"); len(got) != 2 || got[3].Policy.Weight != 2 {
		t.Fatalf("PE 3 registered, answers say %+v", got)
	}
	n.srv.mu.Lock()
	kept := n.srv.answers.pools["cache"]
	n.srv.mu.Unlock()
	if kept == nil || kept.slots[0].b == nil {
		t.Error("no answer was kept for the pool resolved 30 times")
	}
}

// BenchmarkAnswer: the cost of putting one 3-PE Handle Resolution Response
// on the wire, encoded every time ("encode") and found kept ("cached":
// three orders of the pool, as round robin asks for them).
//
//	go test -run '^$' -bench Answer -benchtime 200000x ./enrp
func BenchmarkAnswer(b *testing.B) {
	pes := []PoolElement{testPE(1), testPE(2), testPE(3)}
	var orders []HandleResolutionResponse
	for i := range 3 {
		r := HandleResolutionResponse{Handle: "pool", PolicyType: uint32(policy.TypeRoundRobin)}
		for j := range 3 {
			r.PEs = append(r.PEs, pes[(i+j)%3])
		}
		orders = append(orders, r)
	}
	b.Run("encode", func(b *testing.B) {
		var enc msg.Encoder
		b.ReportAllocs()
		for i := range b.N {
			if _, err := enc.Encode(orders[i%3]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		var enc msg.Encoder
		var c answerCache
		b.ReportAllocs()
		for i := range b.N {
			if _, err := c.encode(&enc, orders[i%3]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestResolutionArmsNoTimer: Handle Resolutions never move the core's next
// deadline, so Server.stepAt need not check whether to wake its timer loop
// after one (the resolution fast path relies on it).
func TestResolutionArmsNoTimer(t *testing.T) {
	c, now := newTestCore(t, 1)
	for i := uint32(1); i <= 3; i++ {
		c.Step(LinkID(i), netip.MustParseAddr("10.0.0.1"), Registration{Handle: "echo", PE: testPE(i)})
	}
	c.Drain()
	for i := range 50 {
		now = now.Add(37 * time.Millisecond)
		c.SetNow(now)
		before := c.NextDeadline()
		for _, max := range []uint32{1, 3, maxResolutionAll} {
			c.Step(LinkID(9), netip.Addr{}, HandleResolution{Handle: "echo", MaxItems: max})
			c.Step(LinkID(9), netip.Addr{}, HandleResolution{Handle: "nothere", MaxItems: max})
		}
		if out := c.Drain(); len(out) != 6 {
			t.Fatalf("step %d: %d outputs, want the 6 answers", i, len(out))
		}
		if after := c.NextDeadline(); !after.Equal(before) {
			t.Fatalf("step %d: resolutions moved the next deadline from %v to %v", i, before, after)
		}
	}
}
