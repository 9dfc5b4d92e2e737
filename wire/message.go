package wire

// Message is one ASAP or ENRP message. Protocol and Type select the layout;
// the fixed fields a message type does not have are ignored when encoding
// and zero after decoding.
type Message struct {
	Protocol Protocol
	Type     Type
	Flags    Flags

	// SenderID and ReceiverID are the ENRP sending and receiving
	// registrars' identifiers (every ENRP message; 0 = not yet known).
	SenderID   uint32
	ReceiverID uint32
	// TargetID is the registrar being taken over (ENRP Init Takeover,
	// Init Takeover Ack, Takeover Server).
	TargetID uint32
	// Action and Reserved are the update action and the reserved field of
	// an ENRP Handle Update.
	Action   UpdateAction
	Reserved uint16
	// ServerID is the registrar identifier of an ASAP Endpoint
	// Keep-Alive or Server Announce.
	ServerID uint32

	// Params are the parameters in wire order.
	Params []Param
}

// hasTarget, hasUpdate and hasServerID tell which fixed fields follow the
// common header (and, for ENRP, the two server identifiers).
func (m *Message) hasTarget() bool {
	return m.Protocol == ENRP && (m.Type == ENRPInitTakeover || m.Type == ENRPInitTakeoverAck || m.Type == ENRPTakeoverServer)
}

func (m *Message) hasUpdate() bool { return m.Protocol == ENRP && m.Type == ENRPHandleUpdate }

func (m *Message) hasServerID() bool {
	return m.Protocol == ASAP && (m.Type == ASAPEndpointKeepAlive || m.Type == ASAPServerAnnounce)
}

// TypeName is the message's type name, e.g. "Registration".
func (m *Message) TypeName() string { return m.Protocol.TypeName(m.Type) }

// Param returns the first parameter of type t (compared without action
// bits), or nil.
func (m *Message) Param(t ParamType) *Param {
	for i := range m.Params {
		if m.Params[i].Type.Code() == t.Code() {
			return &m.Params[i]
		}
	}
	return nil
}

// PoolHandle returns the first Pool Handle, or nil.
func (m *Message) PoolHandle() []byte {
	if p := m.Param(ParamPoolHandle); p != nil {
		return p.PoolHandle
	}
	return nil
}

// PoolElement returns the first Pool Element, or nil.
func (m *Message) PoolElement() *PoolElement {
	if p := m.Param(ParamPoolElement); p != nil {
		return &p.PoolElement
	}
	return nil
}

// PEID returns the PE Identifier parameter's value.
func (m *Message) PEID() (id uint32, ok bool) {
	if p := m.Param(ParamPEIdentifier); p != nil {
		return p.PEID, true
	}
	return 0, false
}

// Causes returns the causes of the first Operation Error parameter.
func (m *Message) Causes() []Cause {
	if p := m.Param(ParamOperationError); p != nil {
		return p.Causes
	}
	return nil
}

// Unrecognized returns the parameters the decoder did not know and kept
// because their action bits say "skip". Those with [ActionSkipReport]
// must be reported to the sender (RFC 5354 section 2.1).
func (m *Message) Unrecognized() []Param {
	var out []Param
	for _, p := range m.Params {
		if !p.Type.Known() {
			out = append(out, p)
		}
	}
	return out
}

// ToReport returns the unrecognized parameters that must be reported in an
// Unrecognized Parameter error cause (action skip-and-report).
func (m *Message) ToReport() []Param {
	var out []Param
	for _, p := range m.Params {
		if !p.Type.Known() && p.Type.Action() == ActionSkipReport {
			out = append(out, p)
		}
	}
	return out
}

// Pools groups the parameters of a message into (pool handle, pool
// elements) pairs in wire order: one pair for a Registration, Handle
// Update or Business Card, as many as pools for a Handle Table Response.
// Pool Elements before any Pool Handle get a nil handle.
func (m *Message) Pools() []PoolEntries {
	var out []PoolEntries
	for i := range m.Params {
		p := &m.Params[i]
		switch p.Type.Code() {
		case ParamPoolHandle:
			out = append(out, PoolEntries{Handle: p.PoolHandle})
		case ParamPoolElement:
			if len(out) == 0 {
				out = append(out, PoolEntries{})
			}
			last := &out[len(out)-1]
			last.Elements = append(last.Elements, &p.PoolElement)
		}
	}
	return out
}

// PoolEntries is a pool handle with the pool elements that follow it.
type PoolEntries struct {
	Handle   []byte
	Elements []*PoolElement
}
