package policy

// builtin lists every shipped algorithm. A new policy is one file declaring
// its Algorithm plus one line here.
var builtin = [...]*Algorithm{
	&roundRobin,
	&weightedRoundRobin,
	&random,
	&weightedRandom,
	&priority,
	&leastUsed,
	&leastUsedDegradation,
	&priorityLeastUsed,
	&randomizedLeastUsed,
	&randomizedPriorityLeastUsed,
	&randomizedLeastUsedDegradation,
	&priorityLeastUsedDegradation,
	&randomizedPriorityLeastUsedDegradation,
	&weightedRandomDPF,
	&leastUsedDPF,
	&leastUsedDegradationDPF,
	&priorityLeastUsedDPF,
	&priorityLeastUsedDegradationDPF,
}

// Lookup returns the built-in algorithm for t, or nil. The returned value
// is shared and must not be modified.
func Lookup(t Type) *Algorithm {
	for _, a := range builtin {
		if a.Type == t {
			return a
		}
	}
	return nil
}

// All returns the built-in algorithms in registry order.
func All() []*Algorithm {
	out := make([]*Algorithm, len(builtin))
	copy(out, builtin[:])
	return out
}

// Validate reports whether a is complete for its kind.
func (a *Algorithm) Validate() error {
	switch {
	case a == nil:
		return errInvalid("nil algorithm")
	case a.Name == "" || a.Type == 0:
		return errInvalid("algorithm without name or type")
	case a.Steer == nil:
		return errInvalid(a.Name + ": no Steer")
	case a.Kind == Ordered && a.Less == nil:
		return errInvalid(a.Name + ": ordered without Less")
	case a.Kind == Weighted && (a.Value == nil || a.Less == nil):
		return errInvalid(a.Name + ": weighted without Value or Less")
	case a.Kind != Ordered && a.Kind != Weighted:
		return errInvalid(a.Name + ": unknown kind")
	}
	return nil
}

type errInvalid string

func (e errInvalid) Error() string { return "policy: " + string(e) }
