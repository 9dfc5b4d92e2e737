package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"
)

// Option configures New.
type Option func(*Node)

// WithLevel gives the node the level variable of its logger's handler, so
// that Reload can change the log level (Config.LogLevel).
func WithLevel(lv *slog.LevelVar) Option { return func(n *Node) { n.level = lv } }

// reloadable are the fields Reload applies to a running node, as YAML paths;
// a change anywhere else needs a restart.
var reloadable = []string{"vips", "registrar.peers", "log-level", "dataplane.control-networks"}

// Reload applies cfg, a configuration re-read on SIGHUP, to the running
// node: the VIP list (services that stay are not touched, so their
// established flows go on; new ones are programmed from the handlespace;
// removed ones stop being steered), the static ENRP peers, the log level and
// the control networks; and it re-reads the TLS certificates, key and policy
// from their files. A change to any other field is refused, naming it, since
// it needs a restart. On any error nothing is changed and the error says
// why: the node goes on with its old configuration.
func (n *Node) Reload(cfg Config) error {
	old := n.config()
	if cfg.Registrar.ID == 0 {
		// A random id was picked at start; a file without one keeps it.
		cfg.Registrar.ID = old.Registrar.ID
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if f := restartFields(old, cfg); len(f) > 0 {
		return fmt.Errorf("reload: %s changed, which needs a restart (a reload applies only %s); nothing was changed",
			strings.Join(f, ", "), strings.Join(reloadable, ", "))
	}
	level, err := parseLevel(cfg.LogLevel)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if cfg.LogLevel != "" && n.level == nil {
		return errors.New("reload: log-level: this node's logger has no adjustable level")
	}
	nets, err := parsePrefixes(cfg.Dataplane.ControlNetworks)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	// TLS first: it is all or nothing by itself, and the one step most
	// likely to fail (a half-written certificate file).
	if err := n.reloadSecurity(); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	n.apply.Lock()
	err = n.sync.SetVIPs(cfg.VIPs)
	n.apply.Unlock()
	if err != nil {
		return fmt.Errorf("reload: vips: %w", err)
	}
	if err := n.lb.SetControlNetworks(nets); err != nil {
		n.apply.Lock()
		rerr := n.sync.SetVIPs(old.VIPs)
		n.apply.Unlock()
		return errors.Join(fmt.Errorf("reload: dataplane.control-networks: %w", err), rerr)
	}
	n.metrics.setVIPs(cfg.VIPs)
	n.feedback.setVIPs(cfg.VIPs)
	n.bgpSetVIPs(cfg.VIPs)
	n.reg.SetPeers(cfg.Registrar.Peers)
	if n.level != nil && cfg.LogLevel != "" {
		n.level.Set(level)
	}
	n.cfgMu.Lock()
	n.cfg = cfg
	n.cfgMu.Unlock()
	added, removed := diffVIPs(old.VIPs, cfg.VIPs)
	n.log.Info("reloaded the configuration", "vips", len(cfg.VIPs), "vips_added", added, "vips_removed", removed,
		"peers", cfg.Registrar.Peers, "log_level", level, "control_networks", cfg.Dataplane.ControlNetworks,
		"tls", n.secure != nil)
	return nil
}

// reloadSecurity re-reads the registrar's TLS material and policy; without
// TLS there is nothing to reload. Open sessions are kept; on error the old
// material stays in use.
func (n *Node) reloadSecurity() error {
	sec := n.secure
	if sec == nil {
		return nil
	}
	if err := sec.TLS.Reload(); err != nil {
		return fmt.Errorf("reload TLS material: %w", err)
	}
	if err := sec.Policy.Reload(); err != nil {
		return fmt.Errorf("reload policy: %w", err)
	}
	return nil
}

func (n *Node) config() Config {
	n.cfgMu.Lock()
	defer n.cfgMu.Unlock()
	return n.cfg
}

// restartFields names the fields, as YAML paths, in which a and b differ
// outside the reloadable ones.
func restartFields(a, b Config) []string {
	a.VIPs, b.VIPs = nil, nil
	a.Registrar.Peers, b.Registrar.Peers = nil, nil
	a.LogLevel, b.LogLevel = "", ""
	a.Dataplane.ControlNetworks, b.Dataplane.ControlNetworks = nil, nil
	var out []string
	diffFields(reflect.ValueOf(a), reflect.ValueOf(b), "", &out)
	return out
}

func diffFields(a, b reflect.Value, path string, out *[]string) {
	if a.Kind() != reflect.Struct {
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, path)
		}
		return
	}
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if path != "" {
			name = path + "." + name
		}
		diffFields(a.Field(i), b.Field(i), name, out)
	}
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if s == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log-level: %q is not debug, info, warn or error", s)
	}
	return l, nil
}

func parsePrefixes(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("dataplane.control-networks[%d]: %q is not a prefix like 192.0.2.0/24", i, s)
		}
		out = append(out, p)
	}
	return out, nil
}

func diffVIPs(old, cur []VIP) (added, removed []string) {
	has := func(vs []VIP, w VIP) bool {
		return slices.ContainsFunc(vs, func(v VIP) bool { return v.key == w.key && v.Handle == w.Handle })
	}
	for _, v := range cur {
		if !has(old, v) {
			added = append(added, v.String())
		}
	}
	for _, v := range old {
		if !has(cur, v) {
			removed = append(removed, v.String())
		}
	}
	return added, removed
}
