package policy

// weightedRandom (RFC 5356 section 4.1.4): draw with probability
// proportional to Weight; weight 0 is never drawn.
// Data plane: the registered weights.
var weightedRandom = Algorithm{
	Type: TypeWeightedRandom, Name: "WeightedRandom", Kind: Weighted,
	Less:  byID,
	Value: func(e *Entry) uint64 { return uint64(e.Settings.Weight) },
	Steer: steerWeight,
}
