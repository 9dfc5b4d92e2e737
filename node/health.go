package node

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rspxdp/rspxdp/enrp"
	"github.com/rspxdp/rspxdp/internal/telemetry"
)

// Readiness tracks what /readyz of a registrar (with or without a data
// plane) reports: the registrar serves, its peers are known, and the data
// plane is attached and its last sync or reconciliation succeeded.
type Readiness struct {
	rv          RegistrarView
	staticPeers int
	peerWait    time.Duration

	serving   atomic.Bool
	servedAt  atomic.Int64 // unix nanoseconds of SetServing(true)
	firstOnce sync.Once
	first     chan struct{} // closed at the first SetServing(true)

	dpMu       sync.Mutex
	dataplane  bool // whether there is one to report on
	attached   bool
	lastDPErr  error
	lastDPTime time.Time
}

// NewReadiness returns the readiness of a registrar that reads rv and was
// given staticPeers peers to contact. Until one of them is alive, the
// registrar is not ready for up to peerWait after it started serving: the
// time it would wait before taking a silent peer over (max-time-last-heard
// + max-time-no-response), after which it serves on its own handlespace,
// knowing its peers are not there.
func NewReadiness(rv RegistrarView, staticPeers int, peerWait time.Duration) *Readiness {
	return &Readiness{rv: rv, staticPeers: staticPeers, peerWait: peerWait, first: make(chan struct{})}
}

// Serving is closed once the registrar first serves: when to tell systemd
// READY=1.
func (r *Readiness) Serving() <-chan struct{} { return r.first }

// PeerWait is the wait NewReadiness expects for the given peer timers, the
// registrar's defaults standing in for zeros.
func PeerWait(maxTimeLastHeard, maxTimeNoResponse time.Duration) time.Duration {
	if maxTimeLastHeard <= 0 {
		maxTimeLastHeard = enrp.DefaultPeerMaxTimeLastHeard
	}
	if maxTimeNoResponse <= 0 {
		maxTimeNoResponse = enrp.DefaultPeerMaxTimeNoResponse
	}
	return maxTimeLastHeard + maxTimeNoResponse
}

// SetServing records that the registrar's listeners are served (true) or
// no longer (false, while it leaves). Like SetDataplane it does nothing on
// a nil Readiness, for a Node assembled without one.
func (r *Readiness) SetServing(on bool) {
	if r == nil {
		return
	}
	if on {
		r.servedAt.Store(time.Now().UnixNano())
	}
	r.serving.Store(on)
	if on {
		r.firstOnce.Do(func() { close(r.first) })
	}
}

// SetDataplane records the outcome of attaching or programming the data
// plane: attached says whether the program is attached, err is the last
// sync's or reconciliation's error (nil: the maps equal the handlespace).
func (r *Readiness) SetDataplane(attached bool, err error) {
	if r == nil {
		return
	}
	r.dpMu.Lock()
	defer r.dpMu.Unlock()
	r.dataplane = true
	r.attached = attached
	r.lastDPErr = err
	r.lastDPTime = time.Now()
}

// Checks returns the checks /readyz runs.
func (r *Readiness) Checks() []telemetry.Check {
	cs := []telemetry.Check{
		{Name: "registrar", Func: r.checkServing},
		{Name: "peers", Func: r.checkPeers},
	}
	r.dpMu.Lock()
	dp := r.dataplane
	r.dpMu.Unlock()
	if dp {
		cs = append(cs, telemetry.Check{Name: "dataplane", Func: r.checkDataplane})
	}
	return cs
}

func (r *Readiness) checkServing() error {
	if !r.serving.Load() {
		return errors.New("registrar is not serving ASAP/ENRP (starting or leaving)")
	}
	return nil
}

func (r *Readiness) checkPeers() error {
	if r.staticPeers == 0 {
		return nil
	}
	if r.rv != nil && len(r.rv.Peers()) > 0 {
		return nil
	}
	if !r.serving.Load() {
		return errors.New("registrar is not serving yet")
	}
	since := time.Since(time.Unix(0, r.servedAt.Load()))
	if since >= r.peerWait {
		return nil // it looked for them as long as a takeover waits: it serves alone
	}
	return fmt.Errorf("none of %d configured peers alive yet (waiting %v more)", r.staticPeers, (r.peerWait - since).Round(time.Millisecond))
}

func (r *Readiness) checkDataplane() error {
	r.dpMu.Lock()
	defer r.dpMu.Unlock()
	switch {
	case !r.attached:
		return errors.New("XDP program not attached")
	case r.lastDPErr != nil:
		return fmt.Errorf("maps differ from the handlespace since %s: %v", r.lastDPTime.Format(time.RFC3339), r.lastDPErr)
	}
	return nil
}
