package enrp

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/selector"
)

// minLifetime keeps a PE asking for a zero or absurd registration life from
// expiring at peers between two Handle Updates.
const minLifetime = time.Second

func (c *Core) reject(link LinkID, m Registration, src netip.Addr, cause Cause, detail string) {
	c.counts.RegistrationsRejected++
	if int(cause) < len(c.counts.RejectedByCause) {
		c.counts.RejectedByCause[cause]++
	} else {
		c.counts.RejectedByCause[0]++
	}
	c.log.Warn("registration rejected", "pool", m.Handle, "pe", idString(m.PE.ID),
		"source", src.String(), "cause", uint16(cause), "reason", cause.String(), "detail", detail)
	c.send(Output{Link: link, Msg: RegistrationResponse{Handle: m.Handle, PEID: m.PE.ID, Reject: true, Cause: cause,
		CauseInfo: msg.OffendingParam(m, cause, m.Handle == "" || len(m.Handle) > MaxHandleLen)}})
}

func (c *Core) onRegistration(link LinkID, src netip.Addr, m Registration) {
	switch {
	case !c.cfg.Allow.Allowed(m.Handle, src):
		c.reject(link, m, src, CauseRejectionDueToSecurity, "pool handle or source not in the allow-list")
		return
	case m.Handle == "" || len(m.Handle) > MaxHandleLen:
		c.reject(link, m, src, CauseInvalidValues, "pool handle length")
		return
	case m.PE.ID == 0 || len(m.PE.Transport.Addrs) == 0 || m.PE.Transport.Port == 0:
		c.reject(link, m, src, CauseInvalidValues, "PE identifier or user transport missing")
		return
	case len(m.PE.Transport.Addrs) > MaxPEAddresses:
		c.reject(link, m, src, CauseInvalidValues, fmt.Sprintf("%d transport addresses, at most %d (its replication must fit one message)",
			len(m.PE.Transport.Addrs), MaxPEAddresses))
		return
	}
	if m.PE.Owner != "" {
		// The identity that registered a PE identifier owns it: another
		// one may not take it over by registering it again.
		if old, ok := c.hs.Lookup(m.Handle, m.PE.ID); ok && old.Owner != "" && old.Owner != m.PE.Owner {
			c.reject(link, m, src, CauseRejectionDueToSecurity,
				fmt.Sprintf("PE identifier owned by %s, registration by %s", old.Owner, m.PE.Owner))
			return
		}
	}
	epoch, holder, ok := c.registrationEpoch(m.Handle, m.PE.ID)
	if !ok {
		// Sent while we were stalled; the PE has registered with another
		// registrar since, whose claim stands (ownership.go).
		c.counts.StaleRegistrations++
		c.log.Info("registration from before our stall ignored: the PE is homed elsewhere now", "pool", m.Handle,
			"pe", idString(m.PE.ID), "home", idString(holder))
		return
	}
	pe := clonePE(m.PE)
	pe.Home = c.cfg.ID
	pe.Epoch = epoch
	if pe.Lifetime < minLifetime {
		pe.Lifetime = minLifetime
	}
	added, err := c.hs.Register(m.Handle, toSel(pe, true), c.now)
	if err != nil {
		cause, ok := selector.CauseOf(err)
		if !ok {
			cause = selector.CauseInvalidValues
		}
		c.reject(link, m, src, Cause(cause), err.Error())
		return
	}
	k := peKey{m.Handle, pe.ID}
	s := c.owned[k]
	if s == nil {
		s = &peState{key: k}
		c.owned[k] = s
	}
	c.setLink(s, link)
	s.asap, s.lifetime, s.awaitingAck = pe.ASAP, pe.Lifetime, false
	c.schedule(s, timerKASend, c.now.Add(c.cfg.KeepAliveInterval))
	if added {
		c.counts.Registrations++
		c.log.Info("PE registered", "pool", m.Handle, "pe", idString(pe.ID), "source", src.String())
	} else {
		c.counts.Reregistrations++
		c.log.Debug("PE re-registered", "pool", m.Handle, "pe", idString(pe.ID))
	}
	c.send(Output{Link: link, Msg: RegistrationResponse{Handle: m.Handle, PEID: pe.ID}})
	c.replicate(HandleUpdate{Action: AddPE, Handle: m.Handle, PE: clonePE(pe)})
}

func (c *Core) onDeregistration(link LinkID, src netip.Addr, m Deregistration) {
	resp := DeregistrationResponse{Handle: m.Handle, PEID: m.PEID}
	k := peKey{m.Handle, m.PEID}
	pe, found := c.lookup(m.Handle, m.PEID)
	s := c.owned[k]
	switch {
	case !c.cfg.Allow.Allowed(m.Handle, src):
		resp.Reject, resp.Cause = true, CauseRejectionDueToSecurity
	case !found && len(c.hs.Elements(m.Handle)) == 0:
		resp.Reject, resp.Cause = true, CauseUnknownPoolHandle
	case !found:
		// Already gone: deregistration is idempotent.
	case pe.Owner != "" && m.Owner != pe.Owner:
		// Only the identity that registered it (RFC 5355 spoofed
		// deregistration, with TLS).
		resp.Reject, resp.Cause = true, CauseRejectionDueToSecurity
	case s != nil && s.link != 0 && s.link != link:
		// Only the PE's own association may remove it (RFC 5355: spoofed
		// deregistration).
		resp.Reject, resp.Cause = true, CauseRejectionDueToSecurity
	case s != nil:
		c.log.Info("PE deregistered", "pool", m.Handle, "pe", idString(m.PEID))
		c.counts.Deregistrations++
		c.removeOwned(k, selector.ReasonDeregistered)
	default:
		// A PE of a peer deregistering here (its home is gone or
		// unreachable for it): drain it locally and tell everyone,
		// naming its owner so they accept the delete.
		c.log.Info("PE deregistered at non-home registrar", "pool", m.Handle, "pe", idString(m.PEID), "home", idString(pe.Home))
		c.counts.Deregistrations++
		_, _ = c.hs.Deregister(m.Handle, m.PEID, c.now)
		c.toAllPeers(func(h Header) Message {
			return HandleUpdate{Header: h, Action: DelPE, Handle: m.Handle, PE: clonePE(pe), Drain: true}
		})
	}
	if resp.Reject {
		c.log.Warn("deregistration rejected", "pool", m.Handle, "pe", idString(m.PEID),
			"source", src.String(), "reason", resp.Cause.String())
	}
	c.send(Output{Link: link, Msg: resp})
}

// Resolve answers a Handle Resolution from the handlespace by the pool's
// policy. It advances the policy state. The answer's PEs share their
// address slices with the handlespace: read them, do not modify them.
func (c *Core) Resolve(m HandleResolution) HandleResolutionResponse {
	n := int(m.MaxItems)
	if m.MaxItems == maxResolutionAll || n < 0 {
		n = selector.All
	}
	els, err := c.hs.Resolve(m.Handle, n, c.resolved[:0])
	c.resolved = els[:0] // reused by the next resolution: the core is not concurrent
	if err != nil || len(els) == 0 {
		return HandleResolutionResponse{Handle: m.Handle, Cause: CauseUnknownPoolHandle}
	}
	resp := HandleResolutionResponse{Handle: m.Handle, PolicyType: uint32(els[0].Policy.Type), PEs: make([]PoolElement, len(els))}
	size := asapResolutionOverhead + handleWireSize(m.Handle)
	for i, el := range els {
		pe := fromSelShared(el, c.lifetimeOf(m.Handle, el.ID))
		if size += peWireSize(pe, false); size > maxMessageBudget && i > 0 {
			// RFC 5352 lets the registrar return fewer than asked: as
			// many as one message holds.
			resp.PEs = resp.PEs[:i]
			break
		}
		resp.PEs[i] = pe
	}
	return resp
}

func (c *Core) onKeepAliveAck(link LinkID, m EndpointKeepAliveAck) {
	s := c.owned[peKey{m.Handle, m.PEID}]
	if s == nil {
		return
	}
	switch {
	case s.link == link:
	case s.link == 0 && s.asap.IsValid() && c.dialled[link] == s.asap:
		// Answered over the connection we opened to the PE's endpoint.
		c.setLink(s, link)
	default:
		// Only the PE's own association answers for it: an ack from
		// elsewhere would let anyone keep a dead PE listed or move its
		// keep-alives away from it (issue 19 item 5).
		c.counts.ForeignAcks++
		c.log.Debug("keep-alive ack ignored: not on the PE's association", "pool", m.Handle, "pe", idString(m.PEID))
		return
	}
	s.awaitingAck = false
	c.schedule(s, timerKASend, c.now.Add(c.cfg.KeepAliveInterval))
}

func (c *Core) onUnreachable(m EndpointUnreachable) {
	k := peKey{m.Handle, m.PEID}
	if c.owned[k] == nil {
		// The home decides (unreachable.go).
		c.unreachableElsewhere(m)
		return
	}
	pe, ok := c.lookup(m.Handle, m.PEID)
	if !ok {
		return
	}
	removed, err := c.hs.ReportUnreachable(m.Handle, m.PEID)
	if err != nil || !removed {
		return
	}
	c.log.Warn("PE removed: too many unreachable reports", "pool", m.Handle, "pe", idString(m.PEID))
	c.counts.UnreachableRemovals++
	c.unown(k)
	c.toAllPeers(func(h Header) Message {
		return HandleUpdate{Header: h, Action: DelPE, Handle: m.Handle, PE: clonePE(pe)}
	})
}
