// Package selector is the RSerPool handlespace: pool handle -> pool ->
// pool elements, with every RFC 5356 policy (package policy), the RFC 5352
// pool consistency rules, handle resolution, unreachability reports,
// registration expiry, the incremental ENRP handlespace checksum and the
// per-pool steering sets the XDP data plane programs. It has no network
// code and no clock: every call that depends on time takes now.
//
// # Handle resolution
//
// Resolve returns up to N active elements (N = 0 means the registrar's
// maximum, default 3 as rsplib; All means every element). Ordered policies
// return the head of the pool's selection order and then advance the
// first MaxIncrement of the returned elements (default 1): each gets a new
// sequence number and its policy update (WRR counters, degradation) and is
// re-sorted. Randomized policies draw without replacement in proportion to
// each element's value.
//
// # Consistency
//
// All elements of a pool share the policy type (else cause 5), the
// transport protocol (cause 7) and transport use (cause 8); an identifier
// in use by a different owner is refused (cause 4). A lone element may
// change these on re-registration. Errors are *Error values carrying the
// cause.
//
// # Steering sets for the data plane
//
// SteeringSet lists the elements new flows may go to, with weights; the
// data plane hashes flows over them (a Maglev table built from the
// weights). Active elements get, per policy:
//
//	RoundRobin, Random                      1 each
//	WeightedRoundRobin, WeightedRandom      the registered weight (0: none)
//	Priority                                1 for the highest priority value, 0 for the rest
//	LeastUsed, RandomizedLeastUsed,
//	LeastUsedDegradation,
//	RandomizedLeastUsedDegradation          free capacity (MaxLoad - load) >> 16, at least 1
//	PriorityLeastUsed (+Degradation,
//	Randomized variants)                    free capacity after load + load degradation
//	WeightedRandomDPF                       weight - weight x distance x WeightDPF (rsplib)
//	LeastUsedDPF, LeastUsedDegradationDPF,
//	PriorityLeastUsedDPF (+Degradation)     free capacity after load (+ degradation for
//	                                        the priority ones) + distance x LoadDPF
//
// LeastUsedDegradation and PriorityLeastUsedDegradation also count the
// element's flow degradation as load: ObserveFlows adds the load
// degradation once per new flow the data plane reports for it, until the
// next re-registration resets it, so a PE that just took many flows gets
// fewer, as handle resolutions treat it.
//
// Least-used weights change whenever a re-registration brings a new load.
// Draining elements (deregistered, within Config.DrainTimeout) are listed
// with weight 0 and state Draining: existing flows stay, new ones go
// elsewhere. Elements removed for keep-alive failure, unreachability or
// expiry leave the set at once, so their flows move.
//
// # Events
//
// Subscribe delivers Added, Removed, StateChanged and WeightsChanged
// events, coalesced per pool between two Drain calls, so a burst of
// registrations to one pool costs the data plane one table rebuild.
//
// # Concurrency
//
// All methods are safe for concurrent use. Writers are serialised by one
// mutex; each pool has its own lock, which resolutions take alone, so
// readers never wait for the handlespace as a whole — only, briefly, for a
// writer changing the same pool.
package selector
