package msg

import (
	"encoding/binary"

	"github.com/rspxdp/rspxdp/wire"
)

// Private parameters (rspxdp extensions) nested in a Pool Element of the
// ENRP messages that replicate it (Handle Update, Handle Table Response),
// after its ASAP transport: they carry what every registrar needs to apply
// the same ownership rules to the PE (issue 19 items 5 and 6). Their top
// bits 10 tell receivers that do not know them to skip them silently; rsplib
// reads a Pool Element's ASAP transport and skips the rest of the parameter
// (as it does after a Server Information's transport, see
// ParamASAPEndpoint), so they go out only behind an ASAP transport, and
// never in ASAP messages: a PE or PU has no use for them, and a
// Registration cannot set them.
const (
	// ParamOwner carries PoolElement.Owner, the TLS identity that
	// registered the PE.
	ParamOwner wire.ParamType = 0xbf42
	// ParamEpoch carries PoolElement.Epoch, 8 bytes big endian.
	ParamEpoch wire.ParamType = 0xbf43
)

// maxOwnerLen bounds the owner identity carried per PE, so that the
// parameter cannot push a replicated PE past what one message holds.
const maxOwnerLen = 255

// withOwnership appends pe's owner and epoch to w, its wire form in an ENRP
// message.
func withOwnership(w wire.PoolElement, pe PoolElement) wire.PoolElement {
	if w.ASAPTransport.Kind == 0 {
		return w
	}
	if pe.Owner != "" && len(pe.Owner) <= maxOwnerLen {
		w.Extra = append(w.Extra, wire.RawParam{Type: ParamOwner, Value: []byte(pe.Owner)})
	}
	if pe.Epoch != 0 {
		w.Extra = append(w.Extra, wire.RawParam{Type: ParamEpoch, Value: binary.BigEndian.AppendUint64(nil, pe.Epoch)})
	}
	return w
}

// ownershipFromWire reads the owner and epoch of a replicated PE.
func ownershipFromWire(pe PoolElement, w *wire.PoolElement) PoolElement {
	for _, p := range w.Extra {
		switch {
		case p.Type == ParamOwner && len(p.Value) <= maxOwnerLen:
			pe.Owner = string(p.Value)
		case p.Type == ParamEpoch && len(p.Value) == 8:
			pe.Epoch = binary.BigEndian.Uint64(p.Value)
		}
	}
	return pe
}

// enrpPE is the wire form of pe in an ENRP message.
func enrpPE(pe PoolElement) wire.Param {
	return wire.PoolElementParam(withOwnership(peToWire(pe), pe))
}
