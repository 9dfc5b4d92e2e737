package enrp

import (
	"time"
)

// Endpoint Unreachable at a registrar that is not the PE's home.
//
// A PU reports a PE it could not reach to the registrar it uses, which is
// usually not the PE's home. Only the home decides that a PE is gone and
// replicates that (a Handle Update deleting it); a copy that vanished at one
// registrar alone would only come back with the next audit. ENRP has no
// message that carries a failure report between registrars, so the report
// is passed on as what it is: an ASAP Endpoint Unreachable sent to the
// home's ASAP endpoint (which its Presence carries, see below), where it
// counts towards MaxBadPEReports like a PU's own. Any RFC 5352
// registrar accepts it.
//
// RFC 5353's Server Information carries only the ENRP endpoint, so ours
// (in Presence and List Response) also carries the ASAP endpoint, as a
// transport parameter wrapped in a parameter of a private type whose action
// bits say "skip silently" (RFC 5354, 3): rsplib and any other receiver
// ignore it. A home that did not send it (rsplib) gets no reports passed
// on; they are counted locally as below.
//
// The views of two registrars may disagree on the home for a moment (a
// takeover, a re-registration elsewhere), and each could then pass the
// report to the other. So a registrar passes on at most MaxBadPEReports
// reports per PE per keep-alive period (interval + timeout), enough for the
// home to act, and counts the rest itself. It counts them itself as well
// when it knows no live home with an ASAP address; at MaxBadPEReports it
// then drops its own copy of the PE, as rsplib's registrar does, but tells
// no one: the home's keep-alives decide for everyone, and if the PE lives
// on the audit brings it back.

// maxForwardWindows bounds the per-PE forwarding records kept.
const maxForwardWindows = 4096

// forwardWindow counts the reports on one PE passed on since start.
type forwardWindow struct {
	start time.Time
	n     int
}

// unreachableElsewhere handles a report on a PE we are not home for.
func (c *Core) unreachableElsewhere(m EndpointUnreachable) {
	pe, ok := c.lookup(m.Handle, m.PEID)
	if !ok {
		return
	}
	if home := c.peers[pe.Home]; home != nil && !home.dead && home.info.ASAP.IsValid() && c.mayForward(peKey{m.Handle, m.PEID}) {
		c.counts.UnreachableForwarded++
		c.log.Debug("Endpoint Unreachable passed on to the home registrar", "pool", m.Handle, "pe", idString(m.PEID),
			"home", idString(pe.Home))
		c.send(Output{Dial: home.info.ASAP, Msg: m})
		return
	}
	removed, err := c.hs.ReportUnreachable(m.Handle, m.PEID)
	if err != nil || !removed {
		return
	}
	c.counts.UnreachableRemovals++
	c.log.Warn("PE dropped locally: too many unreachable reports and its home cannot be told",
		"pool", m.Handle, "pe", idString(m.PEID), "home", idString(pe.Home))
}

// mayForward spends one report of k's forwarding budget.
func (c *Core) mayForward(k peKey) bool {
	period := c.cfg.KeepAliveInterval + c.cfg.KeepAliveTimeout
	if c.forwarded == nil {
		c.forwarded = map[peKey]*forwardWindow{}
	}
	w := c.forwarded[k]
	if w == nil || c.now.Sub(w.start) >= period {
		if w == nil && len(c.forwarded) >= maxForwardWindows {
			for key, o := range c.forwarded {
				if c.now.Sub(o.start) >= period {
					delete(c.forwarded, key)
				}
			}
			if len(c.forwarded) >= maxForwardWindows {
				return false
			}
		}
		w = &forwardWindow{start: c.now}
		c.forwarded[k] = w
	}
	if w.n >= c.cfg.MaxBadPEReports {
		return false
	}
	w.n++
	return true
}
