package main

import "github.com/rspxdp/rspxdp/wire"

// jsonID is a PE or registrar identifier in JSON output: the string
// wire.FormatID writes ("0x00000201"), as in text output, logs and metric
// labels, so one grep finds an identifier everywhere.
type jsonID = wire.ID

// idPtr is a *jsonID for an optional field.
func idPtr(v uint32) *jsonID {
	id := jsonID(v)
	return &id
}
