package policy

// priority (RFC 5356 section 4.1.5): the highest priority value first (as
// rsplib, which keeps the priority in the weight field), ties in round
// robin order.
// Data plane: weight 1 for every element of the highest priority class, 0
// (no new flows, existing flows kept) for the others.
var priority = Algorithm{
	Type: TypePriority, Name: "Priority", Kind: Ordered,
	DefaultMaxIncrement: 1,
	Less: func(a, b *Entry) bool {
		if a.Settings.Weight != b.Settings.Weight {
			return a.Settings.Weight > b.Settings.Weight
		}
		return a.Seq < b.Seq
	},
	Steer: func(es []*Entry, w []uint32) {
		var top uint32
		for _, e := range es {
			top = max(top, e.Settings.Weight)
		}
		for i, e := range es {
			w[i] = 0
			if e.Settings.Weight == top {
				w[i] = 1
			}
		}
	},
}
