package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/selector"
)

// Dataplane is what the node needs of the loader: *loader.Loader implements
// it. Tests of the sync logic that cannot load BPF use a map-backed fake.
type Dataplane interface {
	UpsertService(s loader.Service) error
	RemoveService(k loader.ServiceKey) error
	SetBackends(k loader.ServiceKey, backends []loader.Backend) error
	Services() (map[loader.ServiceKey][]loader.Backend, error)
}

// Syncer keeps the data plane equal to the handlespace: it turns each
// configured pool's steering set into the PE set of its virtual services.
//
// After a restart the maps still hold what the previous process programmed
// while the new registrar's handlespace is still empty (its PEs re-register,
// or a mentor peer sends the table). Programming that empty view would drop
// every established flow, so until the adoption grace ends a PE that the
// data plane has and the handlespace lacks is kept, not removed.
type Syncer struct {
	hs    *selector.Handlespace
	dp    Dataplane
	vips  map[string][]VIP // by pool handle
	l2dsr bool
	log   *slog.Logger

	mu         sync.Mutex
	graceUntil time.Time
	adopted    map[loader.ServiceKey][]loader.Backend
	now        func() time.Time
}

// NewSyncer returns a syncer for vips (validated). It does not touch the data
// plane until Start.
func NewSyncer(hs *selector.Handlespace, dp Dataplane, vips []VIP, l2dsr bool, log *slog.Logger) *Syncer {
	if log == nil {
		log = slog.Default()
	}
	return &Syncer{hs: hs, dp: dp, vips: byHandle(vips), l2dsr: l2dsr, log: log, now: time.Now}
}

func byHandle(vips []VIP) map[string][]VIP {
	m := map[string][]VIP{}
	for _, v := range vips {
		m[v.Handle] = append(m[v.Handle], v)
	}
	return m
}

// SetVIPs replaces the configured virtual services (a configuration
// reload). Services that stay, with the same pool, are not touched, so their
// established flows go on; a removed one stops being steered; a new one is
// programmed from its pool's steering set at once. If any step fails the old
// list is restored, and programmed back, before the error is returned.
func (s *Syncer) SetVIPs(vips []VIP) error {
	old := s.vips
	oldKeys := s.configuredKeys()
	s.vips = byHandle(vips)
	newKeys := s.configuredKeys()
	err := s.switchVIPs(oldKeys, newKeys)
	if err == nil {
		return nil
	}
	s.vips = old
	if rerr := s.switchVIPs(newKeys, oldKeys); rerr != nil {
		return errors.Join(err, fmt.Errorf("restore the previous VIPs: %w", rerr))
	}
	return err
}

func (s *Syncer) switchVIPs(from, to map[loader.ServiceKey]VIP) error {
	for k, v := range from {
		if w, ok := to[k]; ok && w.Handle == v.Handle {
			continue
		}
		if err := s.dp.RemoveService(k); err != nil && !errors.Is(err, loader.ErrNotFound) {
			return fmt.Errorf("remove %s: %w", v, err)
		}
	}
	for k, v := range to {
		if w, ok := from[k]; ok && w.Handle == v.Handle {
			continue
		}
		if err := s.dp.UpsertService(loader.Service{ServiceKey: k, L2DSR: s.l2dsr}); err != nil {
			return fmt.Errorf("program service %s: %w", v, err)
		}
		// Only the new service: its pool's other services keep theirs.
		set, _ := s.hs.SteeringSet(v.Handle)
		if err := s.dp.SetBackends(k, s.desired(v, set)); err != nil {
			return fmt.Errorf("program %s: %w", v, err)
		}
	}
	return nil
}

// Start programs every virtual service from the handlespace. Services the
// data plane already holds (a previous process's pinned state) are adopted:
// their PEs stay for grace unless the handlespace says otherwise. Services
// that are pinned but no longer configured are removed.
func (s *Syncer) Start(grace time.Duration) (adopted int, err error) {
	have, err := s.dp.Services()
	if err != nil {
		return 0, fmt.Errorf("read pinned services: %w", err)
	}
	s.mu.Lock()
	s.adopted = map[loader.ServiceKey][]loader.Backend{}
	for k, b := range have {
		if len(b) > 0 {
			s.adopted[k] = slices.Clone(b)
			adopted += len(b)
		}
	}
	s.graceUntil = s.now().Add(grace)
	s.mu.Unlock()
	want := s.configuredKeys()
	for k := range have {
		if _, ok := want[k]; !ok {
			if err := s.dp.RemoveService(k); err != nil {
				return adopted, fmt.Errorf("remove unconfigured service %s: %w", fmtKey(k), err)
			}
			s.log.Info("removed pinned service that is no longer configured", "vip", fmtKey(k))
		}
	}
	for handle, vs := range s.vips {
		for _, v := range vs {
			if err := s.dp.UpsertService(loader.Service{ServiceKey: v.key, L2DSR: s.l2dsr}); err != nil {
				return adopted, fmt.Errorf("program service %s: %w", v, err)
			}
		}
		if err := s.SyncPool(handle); err != nil {
			return adopted, err
		}
	}
	return adopted, nil
}

func (s *Syncer) configuredKeys() map[loader.ServiceKey]VIP {
	m := map[loader.ServiceKey]VIP{}
	for _, vs := range s.vips {
		for _, v := range vs {
			m[v.key] = v
		}
	}
	return m
}

// Apply programs the pools a batch of handlespace changes touched.
func (s *Syncer) Apply(changes []selector.PoolChange) error {
	var errs []string
	for _, c := range changes {
		if err := s.SyncPool(c.Handle); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("sync: %s", strings.Join(errs, "; "))
	}
	return nil
}

// SyncPool programs the services of one pool from its steering set.
func (s *Syncer) SyncPool(handle string) error {
	vs := s.vips[handle]
	if len(vs) == 0 {
		return nil
	}
	set, _ := s.hs.SteeringSet(handle)
	for _, v := range vs {
		want := s.desired(v, set)
		if err := s.dp.SetBackends(v.key, want); err != nil {
			return fmt.Errorf("program %s: %w", v, err)
		}
	}
	return nil
}

// desired is the PE set a service should have: the pool's steering set, in
// the VIP's address family, plus adopted PEs while the grace lasts.
func (s *Syncer) desired(v VIP, set selector.SteeringSet) []loader.Backend {
	out := BackendsFor(v.key.VIP.Addr(), set)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.now().Before(s.graceUntil) {
		// An adopted PE stands in only until the handlespace knows it:
		// from then on the handlespace rules, so a PE that re-registered
		// and then died is not brought back for the rest of the grace.
		kept := s.adopted[v.key][:0]
		for _, b := range s.adopted[v.key] {
			if slices.ContainsFunc(out, func(o loader.Backend) bool { return o.ID == b.ID }) {
				continue
			}
			out = append(out, b)
			kept = append(kept, b)
		}
		s.adopted[v.key] = kept
		sortBackends(out)
	}
	return out
}

// BackendsFor maps a steering set to data-plane PEs for a VIP: each member's
// first transport address of the VIP's family (IPIP needs IPv4 outside
// IPv4, IPv6 outside IPv6), its weight, and its state. A member with no
// address of that family cannot be reached by this VIP and is left out.
func BackendsFor(vip netip.Addr, set selector.SteeringSet) []loader.Backend {
	out := make([]loader.Backend, 0, len(set.Members))
	for _, m := range set.Members {
		addr, ok := pickAddr(vip, m.Transport.Addrs)
		if !ok {
			continue
		}
		st := loader.Active
		if m.State == selector.Draining {
			st = loader.Draining
		}
		out = append(out, loader.Backend{ID: m.ID, Addr: addr, Weight: m.Weight, State: st})
	}
	sortBackends(out)
	return out
}

func pickAddr(vip netip.Addr, addrs []netip.Addr) (netip.Addr, bool) {
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() == vip.Is4() && a.IsValid() && !a.IsUnspecified() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func sortBackends(b []loader.Backend) {
	sort.Slice(b, func(i, j int) bool { return b[i].ID < b[j].ID })
}

// Repair is one difference the reconciliation found and fixed.
type Repair struct {
	Service string
	What    string
	// Map is the BPF map a kernel-level repair rewrote ("" for a
	// difference between the data plane and the handlespace).
	Map string
}

// kernelRepairer is what *loader.Loader adds to Dataplane: a comparison of
// the kernel's maps with what it wrote there, repairing the difference.
type kernelRepairer interface {
	Repair() ([]loader.Drift, error)
}

// Reconcile compares every service in the data plane with what the
// handlespace says it should be, repairs each difference and returns what
// it repaired. It also ends the adoption grace once it has passed.
func (s *Syncer) Reconcile() ([]Repair, error) {
	var repairs []Repair
	// The kernel's maps first: what the loader reports below is its own
	// record, which an entry deleted behind its back does not change.
	if kr, ok := s.dp.(kernelRepairer); ok {
		drifts, err := kr.Repair()
		for _, d := range drifts {
			repairs = append(repairs, Repair{Service: d.Map, What: d.What, Map: d.Map})
		}
		if err != nil {
			return repairs, fmt.Errorf("reconcile: kernel maps: %w", err)
		}
	}
	have, err := s.dp.Services()
	if err != nil {
		return repairs, fmt.Errorf("reconcile: read services: %w", err)
	}
	want := s.configuredKeys()
	for k := range have {
		if _, ok := want[k]; !ok {
			if err := s.dp.RemoveService(k); err != nil {
				return repairs, fmt.Errorf("reconcile: remove %s: %w", fmtKey(k), err)
			}
			repairs = append(repairs, Repair{Service: fmtKey(k), What: "removed a service that is not configured"})
		}
	}
	for k, v := range want {
		set, _ := s.hs.SteeringSet(v.Handle)
		d := s.desired(v, set)
		got, ok := have[k]
		if !ok {
			if err := s.dp.UpsertService(loader.Service{ServiceKey: k, L2DSR: s.l2dsr}); err != nil {
				return repairs, fmt.Errorf("reconcile: add %s: %w", v, err)
			}
			repairs = append(repairs, Repair{Service: v.String(), What: "added a missing service"})
		}
		got = slices.Clone(got)
		sortBackends(got)
		if diff := diffBackends(got, d); ok && diff == "" {
			continue
		} else if ok {
			repairs = append(repairs, Repair{Service: v.String(), What: diff})
		}
		if err := s.dp.SetBackends(k, d); err != nil {
			return repairs, fmt.Errorf("reconcile: program %s: %w", v, err)
		}
	}
	return repairs, nil
}

func diffBackends(got, want []loader.Backend) string {
	var d []string
	g := map[uint32]loader.Backend{}
	for _, b := range got {
		g[b.ID] = b
	}
	w := map[uint32]bool{}
	for _, b := range want {
		w[b.ID] = true
		o, ok := g[b.ID]
		switch {
		case !ok:
			d = append(d, fmt.Sprintf("PE %d missing", b.ID))
		case o.Addr != b.Addr:
			d = append(d, fmt.Sprintf("PE %d address %s, want %s", b.ID, o.Addr, b.Addr))
		case o.State != b.State:
			d = append(d, fmt.Sprintf("PE %d %s, want %s", b.ID, o.State, b.State))
		case o.Weight != b.Weight:
			d = append(d, fmt.Sprintf("PE %d weight %d, want %d", b.ID, o.Weight, b.Weight))
		}
	}
	for _, b := range got {
		if !w[b.ID] {
			d = append(d, fmt.Sprintf("PE %d stale", b.ID))
		}
	}
	return strings.Join(d, ", ")
}

func fmtKey(k loader.ServiceKey) string {
	return k.VIP.String() + "/" + strings.ToLower(k.Proto.String())
}
