package enrp

import (
	"slices"

	"github.com/rspxdp/rspxdp/msg"
)

// answerCache keeps, per pool, the last few encoded Handle Resolution
// Responses together with the values they were encoded from. Encoding is
// deterministic, so an answer equal in every value to a kept one is the
// same bytes: those are queued again instead of encoding it anew (issue
// 15: a registrar answering the same pool over and over spent a sixth of
// its time encoding the same answer). There is nothing to invalidate: a
// change of the handlespace (a PE added, removed, re-registered with
// another address, policy value, lifetime or home) changes the values of
// the next answer, which then misses and is encoded; sameAnswer compares
// every field. The kept bytes are shared by every queue they are put on
// and never written to.
type answerCache struct {
	pools map[string]*poolAnswers
}

// answerSlots answers are kept per pool: a round-robin pool of n PEs asked
// for all of them cycles through n orders.
const answerSlots = 4

// maxAnswerPools bounds the pools with kept answers; past it the cache
// starts over (pools that are resolved often fill it again at once).
const maxAnswerPools = 4096

type poolAnswers struct {
	slots [answerSlots]keptAnswer
	next  int // the slot replaced on the next miss
}

type keptAnswer struct {
	r HandleResolutionResponse // a deep copy: the original shares the handlespace's slices
	b []byte
}

// encode returns the wire form of r, encoded with enc or kept from an
// equal earlier answer. The result must not be modified.
func (c *answerCache) encode(enc *msg.Encoder, r HandleResolutionResponse) ([]byte, error) {
	pa := c.pools[r.Handle]
	if pa != nil {
		for i := range pa.slots {
			if k := &pa.slots[i]; k.b != nil && sameAnswer(&k.r, &r) {
				return k.b, nil
			}
		}
	}
	b, err := enc.Encode(r)
	if err != nil {
		return nil, err
	}
	if pa == nil {
		if c.pools == nil || len(c.pools) >= maxAnswerPools {
			c.pools = map[string]*poolAnswers{}
		}
		pa = &poolAnswers{}
		c.pools[r.Handle] = pa
	}
	pa.slots[pa.next] = keptAnswer{r: cloneAnswer(r), b: b}
	pa.next = (pa.next + 1) % answerSlots
	return b, nil
}

// sameAnswer reports whether a and b hold the same values, field by field.
func sameAnswer(a, b *HandleResolutionResponse) bool {
	if a.Handle != b.Handle || a.PolicyType != b.PolicyType || a.Cause != b.Cause || len(a.PEs) != len(b.PEs) {
		return false
	}
	for i := range a.PEs {
		if !samePE(&a.PEs[i], &b.PEs[i]) {
			return false
		}
	}
	return true
}

// samePE compares every field of two Pool Elements
// (TestSamePEComparesEveryField fails when a field is added and not here).
func samePE(a, b *PoolElement) bool {
	return a.ID == b.ID && a.Home == b.Home && a.Lifetime == b.Lifetime &&
		a.Transport.Port == b.Transport.Port && a.Transport.Protocol == b.Transport.Protocol &&
		a.Transport.Use == b.Transport.Use && slices.Equal(a.Transport.Addrs, b.Transport.Addrs) &&
		a.ASAP == b.ASAP && a.ASAPProtocol == b.ASAPProtocol && a.Policy == b.Policy &&
		a.Owner == b.Owner && a.Epoch == b.Epoch
}

func cloneAnswer(r HandleResolutionResponse) HandleResolutionResponse {
	r.PEs = slices.Clone(r.PEs)
	for i := range r.PEs {
		r.PEs[i].Transport = cloneTransport(r.PEs[i].Transport)
	}
	return r
}
