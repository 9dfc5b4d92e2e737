package policy

// The least-used family (RFC 5356 sections 4.2.x and rsplib's 0xb0001xxx
// variants). Ordered ones return the element with the lowest effective
// load, ties in round robin order; randomized ones draw in proportion to
// free capacity (MaxLoad minus effective load, at least 1).
//
// Data plane, for the whole family: flows shared in proportion to free
// capacity after the registered load (plus the registered load degradation
// for the priority variants). The per-selection degradation counter is not
// included: it tracks handle resolutions, not data-plane flows. The
// degradation policies include FlowDegradation instead — the load
// degradation times the new flows the data plane reported for the element
// since its last re-registration — so a PE that just took many flows gets
// fewer until it reports its real load, as with resolutions.

func lessLoad(load func(e *Entry) uint64) func(a, b *Entry) bool {
	return func(a, b *Entry) bool {
		la, lb := load(a), load(b)
		if la != lb {
			return la < lb
		}
		return a.Seq < b.Seq
	}
}

func degrade(e *Entry) {
	e.Degradation = uint32(sum3(e.Degradation, e.Settings.LoadDegradation, 0))
}

func loadOnly(e *Entry) uint64     { return uint64(e.Settings.Load) }
func loadDegraded(e *Entry) uint64 { return sum3(e.Settings.Load, e.Degradation, 0) }
func loadPriority(e *Entry) uint64 { return sum3(e.Settings.Load, e.Settings.LoadDegradation, 0) }
func loadPriorityDegr(e *Entry) uint64 {
	return sum3(e.Settings.Load, e.Settings.LoadDegradation, e.Degradation)
}
func loadFlows(e *Entry) uint64 { return sum3(e.Settings.Load, e.FlowDegradation, 0) }
func loadPriorityFlows(e *Entry) uint64 {
	return sum3(e.Settings.Load, e.Settings.LoadDegradation, e.FlowDegradation)
}

var leastUsed = Algorithm{
	Type: TypeLeastUsed, Name: "LeastUsed", Kind: Ordered,
	DefaultMaxIncrement: 1,
	Less:                lessLoad(loadOnly),
	Steer:               steerFree(loadOnly),
}

var leastUsedDegradation = Algorithm{
	Type: TypeLeastUsedDegradation, Name: "LeastUsedDegradation", Kind: Ordered,
	DefaultMaxIncrement: 1,
	Less:                lessLoad(loadDegraded),
	Update:              degrade,
	Steer:               steerFree(loadFlows),
	FlowsDegrade:        true,
}

var priorityLeastUsed = Algorithm{
	Type: TypePriorityLeastUsed, Name: "PriorityLeastUsed", Kind: Ordered,
	DefaultMaxIncrement: 1,
	Less:                lessLoad(loadPriority),
	Steer:               steerFree(loadPriority),
}

var priorityLeastUsedDegradation = Algorithm{
	Type: TypePriorityLeastUsedDegradation, Name: "PriorityLeastUsedDegradation", Kind: Ordered,
	DefaultMaxIncrement: 1,
	Less:                lessLoad(loadPriorityDegr),
	Update:              degrade,
	Steer:               steerFree(loadPriorityFlows),
	FlowsDegrade:        true,
}

var randomizedLeastUsed = Algorithm{
	Type: TypeRandomizedLeastUsed, Name: "RandomizedLeastUsed", Kind: Weighted,
	Less:  byID,
	Value: func(e *Entry) uint64 { return freeShare(loadOnly(e)) },
	Steer: steerFree(loadOnly),
}

// randomizedLeastUsedDegradation: rsplib never grows the degradation for
// this policy (its update only recomputes the draw value), so it draws like
// Randomized Least Used; we keep that.
var randomizedLeastUsedDegradation = Algorithm{
	Type: TypeRandomizedLeastUsedDegradation, Name: "RandomizedLeastUsedDegradation", Kind: Weighted,
	Less:  byID,
	Value: func(e *Entry) uint64 { return freeShare(loadDegraded(e)) },
	Steer: steerFree(loadOnly),
}

var randomizedPriorityLeastUsed = Algorithm{
	Type: TypeRandomizedPriorityLeastUsed, Name: "RandomizedPriorityLeastUsed", Kind: Weighted,
	Less:  byID,
	Value: func(e *Entry) uint64 { return freeShare(loadPriority(e)) },
	Steer: steerFree(loadPriority),
}

var randomizedPriorityLeastUsedDegradation = Algorithm{
	Type: TypeRandomizedPriorityLeastUsedDegradation, Name: "RandomizedPriorityLeastUsedDegradation", Kind: Weighted,
	Less:  byID,
	Value: func(e *Entry) uint64 { return freeShare(loadPriorityDegr(e)) },
	Steer: steerFree(loadPriority),
}
