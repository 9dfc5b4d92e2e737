package security

import (
	"container/list"
	"sync"
	"time"
)

// ReportConfig configures a ReportCounter.
type ReportConfig struct {
	// Reporters is how many distinct reporters must report a PE
	// unreachable within Window before it is removed. 0 means
	// DefaultReporters (rsplib's MaxBadPEReports, 3).
	Reporters int
	// Window is how long a report counts. 0 means DefaultReportWindow.
	Window time.Duration
	// MaxTargets bounds how many PEs are tracked at once; the PE reported
	// least recently is forgotten first. 0 means DefaultMaxTargets.
	MaxTargets int
}

// ReportCounter decides when Endpoint Unreachable reports are enough to
// remove a PE: only after Reporters distinct reporters (identities or
// addresses, see ClientKey) reported it within Window. One liar, however
// often it reports, counts once, so it cannot evict a healthy PE alone
// (RFC 5355 section on false unreachable reports). rsplib counts reports,
// not reporters; this is stricter.
//
// Memory is bounded: at most MaxTargets PEs, each with at most Reporters
// reporters. Time is passed in. It is safe for concurrent use.
type ReportCounter struct {
	k      int
	window time.Duration
	max    int

	mu      sync.Mutex
	targets map[string]*list.Element
	lru     list.List // values are *target; front = most recently reported
}

type target struct {
	key       string
	reporters []report // distinct, at most k
}

type report struct {
	who  string
	when time.Time
}

// NewReportCounter returns a counter for cfg.
func NewReportCounter(cfg ReportConfig) *ReportCounter {
	c := &ReportCounter{k: cfg.Reporters, window: cfg.Window, max: cfg.MaxTargets}
	if c.k <= 0 {
		c.k = DefaultReporters
	}
	if c.window <= 0 {
		c.window = DefaultReportWindow
	}
	if c.max <= 0 {
		c.max = DefaultMaxTargets
	}
	c.targets = make(map[string]*list.Element)
	return c
}

// TargetKey names a PE for Report: its pool handle and PE identifier.
func TargetKey(handle []byte, peID uint32) string {
	return string(handle) + "\x00" + string([]byte{byte(peID >> 24), byte(peID >> 16), byte(peID >> 8), byte(peID)})
}

// Report records that reporter found target unreachable at now and
// reports whether that makes Reporters distinct reporters within Window.
// When it returns true the target's record is cleared: the caller removes
// the PE (and a PE that comes back starts from zero).
func (c *ReportCounter) Report(targetKey, reporter string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	var t *target
	if e, ok := c.targets[targetKey]; ok {
		c.lru.MoveToFront(e)
		t = e.Value.(*target)
	} else {
		if c.lru.Len() >= c.max {
			// Recycle the least recently reported PE's entry.
			e := c.lru.Back()
			t = e.Value.(*target)
			delete(c.targets, t.key)
			t.key, t.reporters = targetKey, t.reporters[:0]
			c.lru.MoveToFront(e)
			c.targets[targetKey] = e
		} else {
			t = &target{key: targetKey}
			c.targets[targetKey] = c.lru.PushFront(t)
		}
	}
	// Drop reports that aged out, and this reporter's earlier one: its
	// new report replaces it (refreshing the time, not the count).
	kept := t.reporters[:0]
	for _, r := range t.reporters {
		if now.Sub(r.when) < c.window && r.who != reporter {
			kept = append(kept, r)
		}
	}
	t.reporters = append(kept, report{who: reporter, when: now})
	if len(t.reporters) >= c.k {
		c.forget(targetKey)
		return true
	}
	return false
}

// Forget drops what is known about target, e.g. when the PE deregistered,
// re-registered or was removed for another reason.
func (c *ReportCounter) Forget(targetKey string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forget(targetKey)
}

func (c *ReportCounter) forget(key string) {
	if e, ok := c.targets[key]; ok {
		delete(c.targets, key)
		c.lru.Remove(e)
	}
}

// Pending returns how many distinct reporters currently count against
// target at now (for logs and status).
func (c *ReportCounter) Pending(targetKey string, now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.targets[targetKey]
	if !ok {
		return 0
	}
	n := 0
	for _, r := range e.Value.(*target).reporters {
		if now.Sub(r.when) < c.window {
			n++
		}
	}
	return n
}

// Len returns the number of PEs tracked.
func (c *ReportCounter) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
