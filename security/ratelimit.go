package security

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// rsplib's registrar defaults, for reference: MaxHRRate and MaxEURate are
// -1 (unlimited) and MaxBadPEReports is 3. rspxdp keeps "unlimited" as the
// zero value of RateConfig.Rate and uses 3 as DefaultReporters.
const (
	// DefaultMaxClients bounds the clients a limiter tracks.
	DefaultMaxClients = 10000
	// DefaultReporters is rsplib's MaxBadPEReports.
	DefaultReporters = 3
	// DefaultReportWindow is how long an Endpoint Unreachable report counts.
	DefaultReportWindow = 30 * time.Second
	// DefaultMaxTargets bounds the PEs a ReportCounter tracks.
	DefaultMaxTargets = 10000
)

// RateConfig configures a RateLimiter.
type RateConfig struct {
	// Rate is the sustained number of requests per second each client may
	// make. 0 or less means unlimited, rsplib's default for both handle
	// resolutions and Endpoint Unreachable reports.
	Rate float64
	// Burst is how many requests a client may make at once after being
	// quiet; below 1 means max(1, Rate).
	Burst float64
	// MaxClients bounds the number of buckets kept; the least recently
	// seen client is forgotten first. 0 means DefaultMaxClients.
	MaxClients int
}

// RateLimiter is a per-client token bucket with bounded memory. Time is
// passed in, never read, so the registrar's state machine and its tests
// decide what "now" is. It is safe for concurrent use.
//
// Forgetting a client (eviction) gives it a full bucket when it comes
// back, so an attacker cycling through MaxClients fresh keys can at most
// reset others' buckets to Burst: the rate stays bounded by Burst per
// eviction, and keys are identities or source addresses it must own.
type RateLimiter struct {
	rate, burst float64
	max         int

	mu      sync.Mutex
	clients map[string]*list.Element
	lru     list.List // front = most recently seen; values are *bucket
}

type bucket struct {
	key    string
	tokens float64
	last   time.Time
}

// NewRateLimiter returns a limiter for cfg.
func NewRateLimiter(cfg RateConfig) *RateLimiter {
	l := &RateLimiter{rate: cfg.Rate, burst: cfg.Burst, max: cfg.MaxClients}
	if l.burst < 1 {
		l.burst = max(1, l.rate)
	}
	if l.max <= 0 {
		l.max = DefaultMaxClients
	}
	l.clients = make(map[string]*list.Element)
	return l
}

// Allow takes one token from key's bucket at time now and reports whether
// there was one. A refused request costs nothing (no debt), so a client
// that keeps hammering is limited to Rate, not starved for ever.
func (l *RateLimiter) Allow(key string, now time.Time) bool {
	if l.rate <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var b *bucket
	if e, ok := l.clients[key]; ok {
		l.lru.MoveToFront(e)
		b = e.Value.(*bucket)
		if dt := now.Sub(b.last); dt > 0 {
			b.tokens = min(l.burst, b.tokens+dt.Seconds()*l.rate)
			b.last = now
		}
	} else {
		if l.lru.Len() >= l.max {
			// Recycle the least recently seen client's entry: a flood
			// of new keys then costs no allocation per request.
			e := l.lru.Back()
			b = e.Value.(*bucket)
			delete(l.clients, b.key)
			*b = bucket{key: key, tokens: l.burst, last: now}
			l.lru.MoveToFront(e)
			l.clients[key] = e
		} else {
			b = &bucket{key: key, tokens: l.burst, last: now}
			l.clients[key] = l.lru.PushFront(b)
		}
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Len returns the number of clients tracked.
func (l *RateLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// ClientKey is the key to limit a client by: its identity when it proved
// one, else its source address (without port, so a client cannot get a
// fresh bucket per connection).
func ClientKey(id Identity, src netip.AddrPort) string {
	if id.Authenticated() {
		return "id:" + id.Key()
	}
	return "addr:" + src.Addr().Unmap().String()
}
