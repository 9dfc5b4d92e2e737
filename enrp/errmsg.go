package enrp

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/wire"
)

// Unrecognized messages and the Error message.
//
// A message the registrar cannot act on — a type its protocol does not
// define, or one a registrar never receives (a Cookie, a Business Card,
// a response) — is answered with an ASAP or ENRP Error message (RFC 5352,
// RFC 5353) whose Operation Error carries an Unrecognized Message cause
// with the message itself (RFC 5354, 3.3.10), so the sender can tell what
// went wrong. Parameters whose type is unknown and whose action bits ask
// for a report (RFC 5354, 3) are reported the same way, with
// Unrecognized Parameter causes, while the rest of the message is processed
// (skip and report) or not (stop and report). An Error is never answered
// with an Error, so two implementations that misunderstand each other
// cannot loop.

// maxEcho bounds the copy of a message sent back in an Unrecognized
// Message cause, so the Error fits the 16-bit length of its own header:
// message header, ENRP IDs, Operation Error and cause headers, padding.
const maxEcho = wire.DefaultMaxMessageSize - 4 - 8 - 4 - 4 - 3

// unrecognizedMsg wraps the message b received over protocol p.
func unrecognizedMsg(p wire.Protocol, b []byte) Unrecognized {
	u := Unrecognized{Protocol: p, Raw: append([]byte(nil), b[:min(len(b), maxEcho)]...)}
	if len(b) > 0 {
		u.Type = wire.Type(b[0])
	}
	if p == wire.ENRP && len(b) >= 12 {
		u.Sender = binary.BigEndian.Uint32(b[4:])
		u.Receiver = binary.BigEndian.Uint32(b[8:])
	}
	return u
}

// classify decides what the core gets for a message that failed to decode
// (decodeErr) or to map (mapErr), or that mapped to m: ok is false when
// nothing goes to the core. report, when ok, is an extra Unrecognized
// carrying the causes of unknown parameters to report.
func classify(p wire.Protocol, b []byte, w *wire.Message, decodeErr error, m Message, mapErr error) (out Message, report *Unrecognized, ok bool) {
	if decodeErr == nil && mapErr == nil && registrarReceives(m) && !hasReportable(w) {
		// The common case, without the error inspection below (whose
		// errors.As target escapes to the heap on every message).
		return m, nil, true
	}
	return classifySlow(p, b, w, decodeErr, m, mapErr)
}

// hasReportable reports whether w has an unknown parameter, the only
// kind ReportCauses can report.
func hasReportable(w *wire.Message) bool {
	for i := range w.Params {
		if !w.Params[i].Type.Known() {
			return true
		}
	}
	return false
}

func classifySlow(p wire.Protocol, b []byte, w *wire.Message, decodeErr error, m Message, mapErr error) (out Message, report *Unrecognized, ok bool) {
	var de *wire.DecodeError
	switch {
	case decodeErr != nil && errors.Is(decodeErr, wire.ErrUnknownMessage):
		return unrecognizedMsg(p, b), nil, true
	case decodeErr != nil && errors.As(decodeErr, &de) && errors.Is(de, wire.ErrUnknownParam) && de.Report:
		u := unrecognizedMsg(p, b)
		u.Raw = nil
		u.Causes = []wire.Cause{{Code: wire.CauseUnrecognizedParameter, Info: append([]byte(nil), de.Bytes...)}}
		return u, nil, true
	case decodeErr != nil:
		return nil, nil, false
	case errors.Is(mapErr, msg.ErrNotHandled):
		return unrecognizedMsg(p, b), nil, true
	case mapErr != nil:
		return nil, nil, false
	case !registrarReceives(m):
		return unrecognizedMsg(p, b), nil, true
	}
	if cs := w.ReportCauses(); len(cs) > 0 {
		u := unrecognizedMsg(p, b)
		u.Raw, u.Causes = nil, cs
		report = &u
	}
	return m, report, true
}

// registrarReceives reports whether m is a message a registrar acts on
// (every other one is answered as unrecognized).
func registrarReceives(m Message) bool {
	switch m.(type) {
	case Registration, Deregistration, HandleResolution, EndpointKeepAliveAck, EndpointUnreachable, ErrorMessage,
		Presence, HandleTableRequest, HandleTableResponse, HandleUpdate, ListRequest, ListResponse,
		InitTakeover, InitTakeoverAck, TakeoverServer:
		return true
	}
	return false
}

func errorType(p wire.Protocol) wire.Type {
	if p == wire.ENRP {
		return wire.ENRPError
	}
	return wire.ASAPError
}

// onUnrecognized answers an unrecognized message (or unknown parameters to
// report) with an Error.
func (c *Core) onUnrecognized(link LinkID, m Unrecognized) {
	if m.Raw != nil && m.Type == errorType(m.Protocol) {
		return // an Error we cannot parse: never answer an Error
	}
	e := ErrorMessage{Protocol: m.Protocol, Causes: m.Causes}
	if m.Raw != nil {
		e.Causes = []wire.Cause{wire.MessageCause(m.Raw)}
		c.log.Info("unrecognized message answered with an Error", "protocol", m.Protocol.String(),
			"type", fmt.Sprintf("0x%02x", uint8(m.Type)), "bytes", len(m.Raw))
	} else {
		c.log.Info("unknown parameters reported with an Error", "protocol", m.Protocol.String(),
			"type", fmt.Sprintf("0x%02x", uint8(m.Type)), "causes", len(m.Causes))
	}
	if m.Protocol == wire.ENRP {
		e.Header = Header{Sender: c.cfg.ID, Receiver: m.Sender}
	}
	c.counts.Unrecognized++
	c.send(Output{Link: link, Msg: e})
}

// onError logs an Error another implementation sent us: it is the only
// evidence of a disagreement about the protocol.
func (c *Core) onError(m ErrorMessage) {
	for _, cs := range m.Causes {
		c.log.Warn("Error message received", "protocol", m.Protocol.String(), "sender", idString(m.Sender),
			"cause", Cause(cs.Code).String(), "infoBytes", len(cs.Info))
	}
}
