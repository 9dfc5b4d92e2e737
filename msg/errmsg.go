package msg

import (
	"errors"

	"github.com/rspxdp/rspxdp/wire"
)

// Unrecognized and Error messages. The registrar's handling of them (what
// it answers with an Error, and why) is in package enrp (errmsg.go).

// ErrNotHandled marks a well-formed message of a type a registrar does
// not process (FromWire's error for a message it has no type for).
var ErrNotHandled = errors.New("not handled by the registrar")

// Unrecognized is what the driver makes of a message the registrar cannot
// process (Raw set: the whole message as received), or of one whose
// unknown parameters must be reported (Causes set: Unrecognized Parameter
// causes; the message itself is processed separately). The core answers it
// with an Error.
type Unrecognized struct {
	// Header: the ENRP sender and receiver, when the header could be read.
	Header
	Protocol wire.Protocol
	Type     wire.Type
	Raw      []byte
	Causes   []wire.Cause
}

// ErrorMessage is the ASAP or ENRP Error message: the causes of an error
// the sender found in a message it received.
type ErrorMessage struct {
	// Header: ENRP only.
	Header
	Protocol wire.Protocol
	Causes   []wire.Cause
}

func (Unrecognized) msgName() string { return "Unrecognized" }
func (ErrorMessage) msgName() string { return "Error" }

// errorToWire encodes an Error message.
func errorToWire(m ErrorMessage) wire.Message {
	w := wire.Message{Protocol: wire.ASAP, Type: wire.ASAPError}
	if m.Protocol == wire.ENRP {
		w = hdr(wire.ENRPError, m.Header)
	}
	w.Params = []wire.Param{wire.ErrorParam(m.Causes...)}
	return w
}

// errorFromWire decodes an Error message, copying the causes out of the
// decoder's reused storage.
func errorFromWire(w *wire.Message) ErrorMessage {
	e := ErrorMessage{Protocol: w.Protocol, Header: Header{Sender: w.SenderID, Receiver: w.ReceiverID}}
	for _, cs := range w.Causes() {
		e.Causes = append(e.Causes, wire.Cause{Code: cs.Code, Info: append([]byte(nil), cs.Info...)})
	}
	return e
}
