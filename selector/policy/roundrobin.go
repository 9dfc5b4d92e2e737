package policy

// roundRobin (RFC 5356 section 4.1.1): elements in turn. The head is the
// element selected least recently; a new element joins at the tail.
// Data plane: every element weight 1.
var roundRobin = Algorithm{
	Type: TypeRoundRobin, Name: "RoundRobin", Kind: Ordered,
	DefaultMaxIncrement: 1,
	Less:                bySeq,
	Steer:               steerEqual,
}
