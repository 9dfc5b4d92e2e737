package enrp

import (
	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/wire"
)

// The tests name the codec of package msg as the core names its messages.

func Encode(m Message) ([]byte, error)                  { return msg.Encode(m) }
func Decode(p wire.Protocol, b []byte) (Message, error) { return msg.Decode(p, b) }
func FromWire(w *wire.Message) (Message, error)         { return msg.FromWire(w) }
