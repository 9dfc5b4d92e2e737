package asap

import (
	"net/netip"
	"time"

	"github.com/rspxdp/rspxdp/msg"
)

// linkID names one ASAP connection between the PE and a registrar: one it
// dialled, or one a registrar opened to the PE's ASAP endpoint (a takeover).
// The machine never touches connections; the driver maps IDs to them.
type linkID uint64

// peOutput is something the machine wants done.
type peOutput struct {
	// Dial asks the driver to connect to a registrar; it answers with
	// linkUp or dialFailed.
	Dial string
	// Close asks the driver to close a link (a registrar that stopped
	// answering).
	Close linkID
	// Link and Msg: send Msg on Link.
	Link linkID
	Msg  msg.Message
	// Event is something to log or report (registered, home changed, ...).
	Event *peEvent
}

// peEventKind says what happened to the registration.
type peEventKind int

const (
	evRegistered peEventKind = iota + 1
	evRejected
	evHomeChanged
	evDeregistered
	evRegistrarLost
)

type peEvent struct {
	Kind  peEventKind
	Home  uint32
	Cause msg.Cause
	Addr  string
}

type peState int

const (
	stDialing       peState = iota + 1 // waiting for a registrar connection
	stRegistering                      // Registration sent, waiting for the response
	stRegistered                       // registered; re-registration due at nextReg
	stDeregistering                    // Deregistration sent
	stClosed
)

// peMachine is the pool element's registration logic as a pure state
// machine: it is fed messages (step), connection changes (linkUp,
// linkDown, dialFailed) and the clock (tick), and appends what must be done
// to its outbox. It does no I/O and reads no clock, so every exchange is
// tested without sleeps.
type peMachine struct {
	handle string
	pe     msg.PoolElement
	// interval between re-registrations; respTimeout bounds the wait for a
	// (De)Registration Response before the registrar is considered dead;
	// retry is the pause after every registrar in the list failed.
	interval, respTimeout, retry time.Duration

	registrars []string
	next       int // index of the registrar to dial next
	failures   int // consecutive dial failures

	now      time.Time
	state    peState
	link     linkID // the link registrations go on (0: none)
	dialing  bool
	home     uint32 // server ID of the home registrar, once known
	deadline time.Time
	nextReg  time.Time
	dirty    bool // policy changed: re-register now
	everOK   bool
	// reasserted is when a foreign registrar's keep-alive last made us
	// re-register with the home (at most once per respTimeout).
	reasserted time.Time
	out        []peOutput
}

func newPEMachine(handle string, pe msg.PoolElement, registrars []string, interval, respTimeout, retry time.Duration, now time.Time) *peMachine {
	return &peMachine{handle: handle, pe: pe, registrars: registrars, interval: interval,
		respTimeout: respTimeout, retry: retry, now: now}
}

// start begins registering: it asks for a connection to the first registrar.
func (m *peMachine) start() {
	m.state = stDialing
	m.dialNext()
}

func (m *peMachine) dialNext() {
	if len(m.registrars) == 0 || m.dialing || m.state == stClosed {
		return
	}
	if m.failures >= len(m.registrars) {
		// Every registrar failed once in a row: wait before the next round.
		m.deadline = m.now.Add(m.retry)
		m.failures = 0
		return
	}
	addr := m.registrars[m.next%len(m.registrars)]
	m.next++
	m.dialing = true
	m.emit(peOutput{Dial: addr})
}

// setRegistrars replaces the list (server announces add to it).
func (m *peMachine) setRegistrars(rs []string) {
	m.registrars = rs
	if m.state == stDialing && !m.dialing && m.deadline.IsZero() {
		m.dialNext()
	}
}

func (m *peMachine) emit(o peOutput) { m.out = append(m.out, o) }

func (m *peMachine) drain() []peOutput {
	o := m.out
	m.out = nil
	return o
}

func (m *peMachine) register() {
	m.state = stRegistering
	m.deadline = m.now.Add(m.respTimeout)
	m.emit(peOutput{Link: m.link, Msg: msg.Registration{Handle: m.handle, PE: m.pe}})
}

// linkUp reports a dialled registrar connection; local is the address the
// PE reaches that registrar from (it replaces an unspecified user address).
func (m *peMachine) linkUp(l linkID, local netip.Addr) {
	m.dialing = false
	m.failures = 0
	if m.state == stClosed {
		m.emit(peOutput{Close: l})
		return
	}
	if m.link != 0 && m.state != stDialing {
		// A takeover gave us a home while we were dialling.
		m.emit(peOutput{Close: l})
		return
	}
	m.fillAddr(local)
	m.link = l
	m.register()
}

func (m *peMachine) fillAddr(local netip.Addr) {
	if !local.IsValid() {
		return
	}
	for i, a := range m.pe.Transport.Addrs {
		if a.IsUnspecified() {
			m.pe.Transport.Addrs[i] = local
		}
	}
	if m.pe.ASAP.IsValid() && m.pe.ASAP.Addr().IsUnspecified() {
		m.pe.ASAP = netip.AddrPortFrom(local, m.pe.ASAP.Port())
	}
}

// dialFailed reports that a dial asked for failed.
func (m *peMachine) dialFailed(addr string) {
	m.dialing = false
	m.failures++
	m.emit(peOutput{Event: &peEvent{Kind: evRegistrarLost, Addr: addr}})
	if m.state == stDialing {
		m.dialNext()
	}
}

// linkDown reports that a connection closed.
func (m *peMachine) linkDown(l linkID) {
	if l != m.link || m.state == stClosed {
		return
	}
	m.lost()
}

// lost abandons the current registrar and looks for another.
func (m *peMachine) lost() {
	if m.link != 0 {
		m.emit(peOutput{Close: m.link})
	}
	m.link = 0
	m.emit(peOutput{Event: &peEvent{Kind: evRegistrarLost, Home: m.home}})
	if m.state == stDeregistering {
		// The registration dies with its lifetime; nothing else to do.
		m.state = stClosed
		m.emit(peOutput{Event: &peEvent{Kind: evDeregistered}})
		return
	}
	m.state = stDialing
	m.deadline = time.Time{}
	m.dialNext()
}

// tick advances the clock.
func (m *peMachine) tick(now time.Time) {
	if now.After(m.now) {
		m.now = now
	}
	switch m.state {
	case stDialing:
		if !m.deadline.IsZero() && !m.now.Before(m.deadline) {
			m.deadline = time.Time{}
			m.dialNext()
		}
	case stRegistering, stDeregistering:
		if !m.now.Before(m.deadline) {
			m.lost() // the registrar stopped answering: it is dead to us
		}
	case stRegistered:
		if m.dirty || !m.now.Before(m.nextReg) {
			m.dirty = false
			m.register()
		}
	}
}

// nextDeadline is when tick must next be called (zero: no timer).
func (m *peMachine) nextDeadline() time.Time {
	switch m.state {
	case stDialing, stRegistering, stDeregistering:
		return m.deadline
	case stRegistered:
		if m.dirty {
			return m.now
		}
		return m.nextReg
	}
	return time.Time{}
}

// setPolicy changes the policy values; the next tick re-registers with them.
func (m *peMachine) setPolicy(p msg.PoolElement) {
	m.pe.Policy = p.Policy
	m.dirty = true
}

// deregister asks the home registrar to remove the PE.
func (m *peMachine) deregister() {
	switch m.state {
	case stRegistered, stRegistering:
		m.state = stDeregistering
		m.deadline = m.now.Add(m.respTimeout)
		m.emit(peOutput{Link: m.link, Msg: msg.Deregistration{Handle: m.handle, PEID: m.pe.ID}})
	default:
		m.state = stClosed
		m.emit(peOutput{Event: &peEvent{Kind: evDeregistered}})
	}
}

// step processes one message received on link.
func (m *peMachine) step(l linkID, in msg.Message) {
	switch in := in.(type) {
	case msg.RegistrationResponse:
		if l != m.link || m.state != stRegistering || in.PEID != m.pe.ID {
			return
		}
		if in.Reject {
			// A refusal is final for this registration: retrying with the
			// same values gets the same answer.
			m.state = stClosed
			m.emit(peOutput{Event: &peEvent{Kind: evRejected, Cause: in.Cause}})
			return
		}
		m.state = stRegistered
		m.nextReg = m.now.Add(m.interval)
		m.everOK = true
		m.emit(peOutput{Event: &peEvent{Kind: evRegistered, Home: m.home}})
	case msg.DeregistrationResponse:
		if l != m.link || m.state != stDeregistering || in.PEID != m.pe.ID {
			return
		}
		m.state = stClosed
		m.emit(peOutput{Event: &peEvent{Kind: evDeregistered}})
	case msg.EndpointKeepAlive:
		if in.PEID != m.pe.ID || in.Handle != m.handle {
			return
		}
		if !in.Home && l != m.link && m.home != 0 && in.ServerID != m.home {
			// Only the home's keep-alives are answered (and a takeover's):
			// a registrar that lost us while it was stalled must find us
			// silent and let go, not keep us alongside our home.
			//
			// But it believes it owns us: a registration of ours reached
			// it late, after we had given up on it and registered with
			// the home (a retransmission, say), and its newer
			// claim made the home let go. Left alone it times us out and
			// deletes us everywhere, home included. Registering with the
			// home again at once makes the home's claim the newer one,
			// so the other lets go instead
			// (TestLateRegistrationConverges).
			if m.state == stRegistered && (m.reasserted.IsZero() || m.now.Sub(m.reasserted) >= m.respTimeout) {
				m.reasserted = m.now
				m.register()
			}
			return
		}
		m.emit(peOutput{Link: l, Msg: msg.EndpointKeepAliveAck{Handle: m.handle, PEID: m.pe.ID}})
		if m.state == stClosed || m.state == stDeregistering {
			return
		}
		if in.Home && (in.ServerID != m.home || l != m.link) {
			// Takeover: the sender adopted us. Make it home and re-register
			// with it on the connection it opened (we may not know its
			// ASAP address otherwise).
			old := m.link
			m.home, m.link = in.ServerID, l
			if old != 0 && old != l {
				m.emit(peOutput{Close: old})
			}
			m.emit(peOutput{Event: &peEvent{Kind: evHomeChanged, Home: m.home}})
			m.register()
			return
		}
		if l == m.link && in.ServerID != m.home {
			m.home = in.ServerID
			m.emit(peOutput{Event: &peEvent{Kind: evHomeChanged, Home: m.home}})
		}
	}
}
