package policy

import "math"

// The distance penalty factor (DPF) family of rsplib for geographically
// dispersed pools: the registrar measures each element's Distance and the
// element registers a penalty per distance unit (LoadDPF or WeightDPF,
// scaled so MaxLoad means 1.0). Far elements look more loaded, or lighter.
//
// Data plane: as the base policy, with the distance penalty applied (free
// capacity after load plus penalty; or the penalised weight).

// distanceLoad is the load-equivalent penalty: Distance x LoadDPF, which is
// rsplib's Distance x (LoadDPF / MaxLoad) x MaxLoad without the rounding.
func distanceLoad(e *Entry) uint64 {
	v := uint64(e.Settings.Distance) * uint64(e.Settings.LoadDPF)
	return min(v, MaxLoad)
}

func withDistance(load func(e *Entry) uint64) func(e *Entry) uint64 {
	return func(e *Entry) uint64 { return min(load(e)+distanceLoad(e), MaxLoad) }
}

// weightDPF is rsplib's penalised weight: Weight minus
// round(Weight x Distance x WeightDPF / MaxLoad), at least 1 when the
// penalty exceeds the weight.
func weightDPF(e *Entry) uint64 {
	w := float64(e.Settings.Weight)
	pen := math.RoundToEven(w * float64(e.Settings.Distance) * (float64(e.Settings.WeightDPF) / MaxLoad))
	v := w - pen
	if v < 0 {
		return 1
	}
	return uint64(v)
}

var weightedRandomDPF = Algorithm{
	Type: TypeWeightedRandomDPF, Name: "WeightedRandomDPF", Kind: Weighted,
	Less:  byID,
	Value: weightDPF,
	Steer: func(es []*Entry, w []uint32) {
		for i, e := range es {
			w[i] = uint32(min(weightDPF(e), math.MaxUint32))
		}
	},
}

var leastUsedDPF = Algorithm{
	Type: TypeLeastUsedDPF, Name: "LeastUsedDPF", Kind: Ordered,
	DefaultMaxIncrement: 1,
	Less:                lessLoad(withDistance(loadOnly)),
	Steer:               steerFree(withDistance(loadOnly)),
}

var leastUsedDegradationDPF = Algorithm{
	Type: TypeLeastUsedDegradationDPF, Name: "LeastUsedDegradationDPF", Kind: Ordered,
	DefaultMaxIncrement: 1,
	Less:                lessLoad(withDistance(loadDegraded)),
	Update:              degrade,
	Steer:               steerFree(withDistance(loadOnly)),
}

var priorityLeastUsedDPF = Algorithm{
	Type: TypePriorityLeastUsedDPF, Name: "PriorityLeastUsedDPF", Kind: Ordered,
	DefaultMaxIncrement: 1,
	Less:                lessLoad(withDistance(loadPriority)),
	Steer:               steerFree(withDistance(loadPriority)),
}

var priorityLeastUsedDegradationDPF = Algorithm{
	Type: TypePriorityLeastUsedDegradationDPF, Name: "PriorityLeastUsedDegradationDPF", Kind: Ordered,
	DefaultMaxIncrement: 1,
	Less:                lessLoad(withDistance(loadPriorityDegr)),
	Update:              degrade,
	Steer:               steerFree(withDistance(loadPriority)),
}
