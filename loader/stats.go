package loader

import (
	"errors"
	"fmt"

	"github.com/rspxdp/rspxdp/bpf"
)

// Counters count what the data path forwarded for a service.
type Counters struct {
	Packets, Bytes uint64
}

// BackendCounters count what the data path sent to one PE. NewFlows feeds
// least-used policies: flows created, not packets.
type BackendCounters struct {
	Packets, Bytes, NewFlows uint64
}

// Drops counts dropped packets by reason.
type Drops struct {
	// NoPE: a service packet with no active PE to take it.
	NoPE uint64
	// BadHeader: a truncated or malformed IP or transport header.
	BadHeader uint64
	// TooBig: the encapsulated packet would exceed the MTU.
	TooBig uint64
	// Control: sent to a control port (Options.ControlPorts) from a
	// source outside Options.ControlNetworks.
	Control uint64
	// Undeliverable: steered to a PE whose egress interface the data path
	// could not send on (no device map entry). Not counted as sent.
	Undeliverable uint64
}

// Stats is a snapshot of the data path's counters, summed over CPUs.
type Stats struct {
	Services map[ServiceKey]Counters
	// Backends by service, then the control plane's PE identifier.
	Backends map[ServiceKey]map[uint32]BackendCounters
	// ConnHits and ConnMisses count connection table lookups of service
	// packets; Resteered counts entries moved off a down or removed PE.
	ConnHits, ConnMisses, Resteered uint64
	// FloodSkipped counts new flows the flood guard forwarded without a
	// connection entry.
	FloodSkipped uint64
	// ICMPForwarded counts "fragmentation needed"/"packet too big" errors
	// sent on to the PE of the flow they quote.
	ICMPForwarded uint64
	Drops         Drops
}

// Stats reads every counter.
func (l *Loader) Stats() (Stats, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := Stats{
		Services: make(map[ServiceKey]Counters, len(l.services)),
		Backends: make(map[ServiceKey]map[uint32]BackendCounters, len(l.services)),
	}
	var g []bpf.LbGlobalStats
	if err := l.objs.LbStats.Lookup(uint32(0), &g); err != nil {
		return st, fmt.Errorf("read global counters: %w", err)
	}
	for _, c := range g {
		st.ConnHits += c.ConnHit
		st.ConnMisses += c.ConnMiss
		st.Resteered += c.Resteered
		st.FloodSkipped += c.FloodSkip
		st.ICMPForwarded += c.IcmpFwd
		st.Drops.NoPE += c.DropNoPe
		st.Drops.BadHeader += c.DropBadHeader
		st.Drops.TooBig += c.DropTooBig
		st.Drops.Control += c.DropControl
		st.Drops.Undeliverable += c.DropUndeliverable
	}
	for k, svc := range l.services {
		var vs []bpf.LbVipStats
		if err := l.objs.LbVipStats.Lookup(svc.id, &vs); err != nil {
			return st, fmt.Errorf("read counters of %s: %w", k, err)
		}
		var c Counters
		for _, v := range vs {
			c.Packets += v.Packets
			c.Bytes += v.Bytes
		}
		st.Services[k] = c
		bes := make(map[uint32]BackendCounters, len(svc.backends))
		for peID, slot := range svc.backends {
			var ps []bpf.LbPeStats
			if err := l.objs.LbPeStats.Lookup(slot, &ps); err != nil {
				return st, fmt.Errorf("read counters of PE %d of %s: %w", peID, k, err)
			}
			var b BackendCounters
			for _, p := range ps {
				b.Packets += p.Packets
				b.Bytes += p.Bytes
				b.NewFlows += p.NewFlows
			}
			bes[peID] = b
		}
		st.Backends[k] = bes
	}
	return st, nil
}

// ConnCount counts the connection table's entries (it walks the table:
// for tests and diagnostics, not for a hot path).
func (l *Loader) ConnCount() (int, error) {
	var k bpf.LbConnKey
	var v bpf.LbConn
	n := 0
	it := l.objs.LbConns.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		return n, fmt.Errorf("walk connection table: %w", err)
	}
	return n, nil
}

// ConnTableMemory is the kernel memory the connection table holds, as the
// kernel accounts it (all of it is allocated when the table is created).
func (l *Loader) ConnTableMemory() (uint64, error) {
	info, err := l.objs.LbConns.Info()
	if err != nil {
		return 0, fmt.Errorf("connection table info: %w", err)
	}
	n, ok := info.Memlock()
	if !ok {
		return 0, errors.New("connection table info: the kernel reports no memory figure")
	}
	return n, nil
}
