package wire

// ParamCause returns a cause of code c carrying the encoding of p, e.g. an
// Unrecognized Parameter cause reporting a parameter of the sender's.
func ParamCause(c CauseCode, p *Param) (Cause, error) {
	b, err := appendParam(nil, p)
	if err != nil {
		return Cause{}, err
	}
	return Cause{Code: c, Info: b}, nil
}

// MessageCause returns an Unrecognized Message cause carrying the bytes of
// the message that was not understood.
func MessageCause(msg []byte) Cause {
	return Cause{Code: CauseUnrecognizedMessage, Info: append([]byte(nil), msg...)}
}

// ReportCauses returns one Unrecognized Parameter cause for each parameter
// of m that was skipped with the skip-and-report action, ready to be sent
// back in an Operation Error (RFC 5354 section 2.1).
func (m *Message) ReportCauses() []Cause {
	var out []Cause
	for i := range m.Params {
		p := &m.Params[i]
		if p.Type.Known() || p.Type.Action() != ActionSkipReport {
			continue
		}
		if c, err := ParamCause(CauseUnrecognizedParameter, p); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// Param decodes the parameter carried by a cause whose code has
// [CauseCode.NestedParam] set.
func (c Cause) Param(d *Decoder) (Param, error) {
	if !c.Code.NestedParam() {
		return Param{}, &DecodeError{Field: "cause(" + c.Code.String() + ")", Err: ErrBadValue}
	}
	return d.DecodeParam(c.Info)
}

// Message decodes the message carried by an Unrecognized Message cause; p
// is the protocol of the Operation Error that carried it.
func (c Cause) Message(d *Decoder, p Protocol) (*Message, error) {
	if !c.Code.NestedMessage() {
		return nil, &DecodeError{Field: "cause(" + c.Code.String() + ")", Err: ErrBadValue}
	}
	m := new(Message)
	if err := d.Decode(p, c.Info, m); err != nil {
		return nil, err
	}
	return m, nil
}
