package policy

// weightedRoundRobin (RFC 5356 section 4.1.2): each element is returned
// Weight times per round. Entries are ordered by round, then by the most
// selections still due in the round, then by sequence number, so within a
// round the elements interleave: ordering by the fewest due instead sent
// an element all its Weight selections in a row, and with two weights of
// 2^32-1 every selection for billions went to one element (issue 19 item
// 8). A new element joins the round the pool's head is in, with a full
// virtual count; a weight 0 element is returned once per round, as in
// rsplib.
// Data plane: the registered weights.
var weightedRoundRobin = Algorithm{
	Type: TypeWeightedRoundRobin, Name: "WeightedRoundRobin", Kind: Ordered,
	DefaultMaxIncrement: 1,
	Less: func(a, b *Entry) bool {
		if a.Round != b.Round {
			return a.Round < b.Round
		}
		if a.Virtual != b.Virtual {
			return a.Virtual > b.Virtual
		}
		return a.Seq < b.Seq
	},
	Init: func(e, head *Entry) {
		if head != nil {
			e.Round = head.Round
		}
		e.Virtual = uint64(e.Settings.Weight)
	},
	Update: func(e *Entry) {
		if e.Virtual > 1 {
			e.Virtual--
			return
		}
		e.Round++
		e.Virtual = uint64(e.Settings.Weight)
	},
	Steer: steerWeight,
}
