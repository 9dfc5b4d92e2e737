package node

import (
	"sync"

	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/selector"
)

// flowFeedback feeds the data plane's per-PE new-flow counters back into
// the handlespace (selector.Handlespace.ObserveFlows), so least-used
// policies with degradation spread new flows away from a PE that just took
// many, until it re-registers with its real load — what handle
// resolutions do for RSerPool-aware users.
type flowFeedback struct {
	hs   *selector.Handlespace
	mu   sync.Mutex                   // guards vips, replaced on a reload
	vips map[loader.ServiceKey]string // service -> pool handle
	last map[loader.ServiceKey]map[uint32]uint64
}

func newFlowFeedback(hs *selector.Handlespace, vips []VIP) *flowFeedback {
	f := &flowFeedback{hs: hs, last: map[loader.ServiceKey]map[uint32]uint64{}}
	f.setVIPs(vips)
	return f
}

// setVIPs replaces the services whose counters are fed back.
func (f *flowFeedback) setVIPs(vips []VIP) {
	m := make(map[loader.ServiceKey]string, len(vips))
	for _, v := range vips {
		m[v.Key()] = v.Handle
	}
	f.mu.Lock()
	f.vips = m
	f.mu.Unlock()
}

// step hands the new flows counted since the previous step to the
// handlespace and returns how many PEs' weights changed. The first step
// only learns the counters: flows before the node started (a previous
// run's, adopted with the pinned maps) are not charged again.
func (f *flowFeedback) step(st loader.Stats) int {
	f.mu.Lock()
	vips := f.vips
	f.mu.Unlock()
	changed := 0
	for k, pes := range st.Backends {
		handle, ok := vips[k]
		if !ok {
			continue
		}
		prev, seen := f.last[k]
		next := make(map[uint32]uint64, len(pes))
		for id, c := range pes {
			next[id] = c.NewFlows
			if !seen {
				continue
			}
			old, ok := prev[id]
			if !ok || c.NewFlows < old {
				old = 0 // a PE new to this service, or its slot reused
			}
			if d := c.NewFlows - old; d > 0 {
				if ch, _ := f.hs.ObserveFlows(handle, id, d); ch {
					changed++
				}
			}
		}
		f.last[k] = next
	}
	return changed
}
