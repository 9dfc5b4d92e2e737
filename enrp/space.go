package enrp

import (
	"net/netip"
	"sort"
	"time"

	"github.com/rspxdp/rspxdp/selector"
)

// The handlespace itself (pools, policies, consistency rules, checksums,
// expiry of PEs owned by peers) is a *selector.Handlespace. What the core
// adds is the home registrar's bookkeeping for the PEs it owns: the ASAP
// link, the keep-alive timer and the registered lifetime.

// peKey names a PE in the handlespace: its identifier is unique per pool.
type peKey struct {
	handle string
	id     uint32
}

// peState is the home registrar's record of one PE it owns.
type peState struct {
	key peKey
	// link is the ASAP connection the PE registered or last answered on
	// (0: none; the keep-alive then dials asap).
	link     LinkID
	asap     netip.AddrPort
	lifetime time.Duration
	// gen identifies the armed timer: a heap entry whose gen differs is stale.
	gen         uint64
	timer       timerKind
	awaitingAck bool
}

// toSel converts a PE for the selector. PEs we own never expire there
// (keep-alives decide); those of peers live for their registration life.
func toSel(pe PoolElement, owned bool) selector.PoolElement {
	el := selector.PoolElement{
		ID:        pe.ID,
		Home:      pe.Home,
		Transport: cloneTransport(pe.Transport),
		Policy:    pe.Policy,
		Owner:     pe.Owner,
		UserData:  asapEndpoint{pe.ASAP, pe.ASAPProtocol, pe.Epoch},
	}
	if !owned {
		el.Lifetime = pe.Lifetime
	}
	return el
}

// fromSel converts back; lifetime comes from our record for owned PEs.
func fromSel(el selector.PoolElement, lifetime time.Duration) PoolElement {
	pe := fromSelShared(el, lifetime)
	pe.Transport = cloneTransport(pe.Transport)
	return pe
}

// fromSelShared is fromSel for a PE that is encoded and dropped at once
// (a resolution answer): its address slice stays shared with the
// handlespace, which never modifies one in place, saving a copy per PE on
// the registrar's most frequent path.
func fromSelShared(el selector.PoolElement, lifetime time.Duration) PoolElement {
	pe := PoolElement{
		ID:        el.ID,
		Home:      el.Home,
		Lifetime:  el.Lifetime,
		Transport: el.Transport,
		Policy:    el.Policy,
		Owner:     el.Owner,
	}
	if lifetime > 0 {
		pe.Lifetime = lifetime
	}
	if a, ok := el.UserData.(asapEndpoint); ok {
		pe.ASAP, pe.ASAPProtocol, pe.Epoch = a.addr, a.proto, a.epoch
	}
	return pe
}

// asapEndpoint is what the selector keeps for the registrar per PE: its
// ASAP address and the transport it speaks there.
type asapEndpoint struct {
	addr  netip.AddrPort
	proto selector.Protocol
	epoch uint64 // PoolElement.Epoch (ownership.go)
}

func cloneTransport(t selector.Transport) selector.Transport {
	t.Addrs = append([]netip.Addr(nil), t.Addrs...)
	return t
}

func clonePE(pe PoolElement) PoolElement {
	pe.Transport = cloneTransport(pe.Transport)
	return pe
}

// lookup returns an active PE.
func (c *Core) lookup(handle string, id uint32) (PoolElement, bool) {
	el, ok := c.hs.Lookup(handle, id)
	if !ok || el.State != selector.Active {
		return PoolElement{}, false
	}
	var life time.Duration
	if s := c.owned[peKey{handle, id}]; s != nil {
		life = s.lifetime
	}
	return fromSel(el, life), true
}

// ownedBy lists the active PEs whose home is owner, in (handle, id) order.
func (c *Core) ownedBy(owner uint32) []peEntry {
	var out []peEntry
	c.hs.Range(func(handle string, el selector.PoolElement) bool {
		if el.Home == owner {
			out = append(out, peEntry{handle, fromSel(el, c.lifetimeOf(handle, el.ID))})
		}
		return true
	})
	return out
}

func (c *Core) lifetimeOf(handle string, id uint32) time.Duration {
	if s := c.owned[peKey{handle, id}]; s != nil {
		return s.lifetime
	}
	return 0
}

type peEntry struct {
	handle string
	pe     PoolElement
}

// keys lists every active PE (ownOnly: those we own) in a stable order, for
// chunked Handle Table Responses.
func (c *Core) keys(ownOnly bool) []peKey {
	var out []peKey
	c.hs.Range(func(handle string, el selector.PoolElement) bool {
		if !ownOnly || el.Home == c.cfg.ID {
			out = append(out, peKey{handle, el.ID})
		}
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].handle != out[j].handle {
			return out[i].handle < out[j].handle
		}
		return out[i].id < out[j].id
	})
	return out
}

// setLink records that s is reached over link (0: none), keeping the count
// of owned PEs per link that LinkInUse reads.
func (c *Core) setLink(s *peState, link LinkID) {
	if s.link == link {
		return
	}
	if s.link != 0 {
		if c.linkPEs[s.link]--; c.linkPEs[s.link] <= 0 {
			delete(c.linkPEs, s.link)
		}
	}
	s.link = link
	if link != 0 {
		c.linkPEs[link]++
	}
}

// unown forgets our home record of k.
func (c *Core) unown(k peKey) {
	if s := c.owned[k]; s != nil {
		c.setLink(s, 0)
		delete(c.owned, k)
	}
}

// LinkInUse reports whether something depends on link: a PE we own
// registered or answers on it, or a peer is bound to it. The driver does not
// evict such links to make room for new connections.
func (c *Core) LinkInUse(link LinkID) bool {
	_, peer := c.links[link]
	return peer || c.linkPEs[link] > 0
}

// PeerLink reports whether link is bound to a peer that introduced itself
// with a valid Presence (its queue may then hold a handle table).
func (c *Core) PeerLink(link LinkID) bool {
	_, ok := c.links[link]
	return ok
}

// LinkDialled tells the core that link is a connection the driver opened to
// a PE's ASAP endpoint addr: a keep-alive ack for a PE we own at addr and
// reach over no link of its own is accepted on it (onKeepAliveAck).
func (c *Core) LinkDialled(link LinkID, addr netip.AddrPort) { c.dialled[link] = addr }
