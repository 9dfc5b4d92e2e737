package wire

import (
	"errors"
	"fmt"
)

// Sentinel reasons of a [DecodeError]; test with errors.Is.
var (
	// ErrTruncated: a length runs past the end of its enclosing buffer.
	ErrTruncated = errors.New("length runs past the buffer")
	// ErrBadLength: a length is smaller than its header or does not fit the
	// field it describes.
	ErrBadLength = errors.New("invalid length")
	// ErrTooLarge: the message is larger than the decoder's MaxMessageSize.
	ErrTooLarge = errors.New("message larger than the configured maximum")
	// ErrTooDeep: parameters are nested deeper than the decoder's MaxDepth.
	ErrTooDeep = errors.New("parameters nested too deep")
	// ErrUnknownMessage: the message type is not defined for the protocol.
	ErrUnknownMessage = errors.New("unknown message type")
	// ErrUnknownParam: an unknown parameter whose action bits say stop.
	ErrUnknownParam = errors.New("unknown parameter with action stop")
	// ErrBadValue: a value that cannot be right (e.g. an unknown protocol).
	ErrBadValue = errors.New("invalid value")
)

// DecodeError says which field of which message was wrong. Err is one of
// the sentinels above.
type DecodeError struct {
	// Field is a path such as "PoolElement.SCTPTransport.length".
	Field string
	// Offset is the byte offset of the field within the decoded buffer.
	Offset int
	Err    error
	// Param is the offending parameter type for ErrUnknownParam; Report
	// is true when its action bits ask for it to be reported.
	Param  ParamType
	Report bool
	// Bytes is a copy of the offending parameter (type, length, value,
	// unpadded) for ErrUnknownParam, to be sent back in an Unrecognized
	// Parameter cause when Report is set.
	Bytes []byte
}

// Error says which field was wrong, where, and why.
func (e *DecodeError) Error() string {
	return fmt.Sprintf("wire: %s at offset %d: %v", e.Field, e.Offset, e.Err)
}

// Unwrap returns the sentinel reason.
func (e *DecodeError) Unwrap() error { return e.Err }

// EncodeError says why a message could not be encoded.
type EncodeError struct {
	Field string
	Err   error
}

// Error says which field could not be encoded and why.
func (e *EncodeError) Error() string { return fmt.Sprintf("wire: encode %s: %v", e.Field, e.Err) }

// Unwrap returns the reason.
func (e *EncodeError) Unwrap() error { return e.Err }
