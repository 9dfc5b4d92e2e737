package policy

// random (RFC 5356 section 4.1.3): uniform draw without replacement.
// Data plane: every element weight 1.
var random = Algorithm{
	Type: TypeRandom, Name: "Random", Kind: Weighted,
	Less:  byID,
	Value: func(*Entry) uint64 { return 1 },
	Steer: steerEqual,
}
