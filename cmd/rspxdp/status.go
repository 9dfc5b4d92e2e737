package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rspxdp/rspxdp/asap"
	"github.com/rspxdp/rspxdp/selector/policy"
	"github.com/rspxdp/rspxdp/wire"
)

const statusUsage = `Usage: rspxdp status --registrar ENRP-ADDR [--json]

Dumps a registrar's handlespace, the operator's equivalent of rsplib's
hsdump: every pool with its PEs (identifier, user address, home registrar,
policy and values, lifetime) and the RFC 5353 checksum over the PEs of
each home registrar, as ENRP Presence carries it. Comparing the checksums
of two registrars shows whether they agree.

The dump is read with ENRP Handle Table Requests, so --registrar is the
registrar's ENRP address (port 9901 by default), not its ASAP one.

Examples:
  rspxdp status --registrar 127.0.0.1:9901
  rspxdp status --registrar 10.0.0.1:9901 --json | jq '.pools[].handle'`

func runStatus(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "status", statusUsage)
	reg := fs.String("registrar", "", "registrar ENRP address HOST:PORT (required)")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if *reg == "" {
		return usagef("--registrar is required")
	}
	if err := checkHostPorts("--registrar", []string{*reg}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	log, _ := newLogger(env, "error")
	d, err := asap.DumpHandlespace(ctx, *reg, asap.WithLogger(log))
	if err != nil {
		return err
	}
	if *asJSON {
		type pool struct {
			Handle string   `json:"handle"`
			PEs    []jsonPE `json:"pes"`
		}
		out := struct {
			Registrar string            `json:"registrar"`
			Pools     []pool            `json:"pools"`
			Checksums map[string]string `json:"checksums"`
			Total     string            `json:"total_checksum"`
		}{Registrar: fmt.Sprintf("$%08x", d.Registrar), Pools: []pool{}, Checksums: map[string]string{},
			Total: fmt.Sprintf("0x%04x", d.Total)}
		for _, p := range d.Pools {
			out.Pools = append(out.Pools, pool{Handle: p.Handle, PEs: jsonPEs(p.PEs)})
		}
		for h, c := range d.Checksums {
			out.Checksums[fmt.Sprintf("$%08x", h)] = fmt.Sprintf("0x%04x", c)
		}
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	n := 0
	for _, p := range d.Pools {
		n += len(p.PEs)
	}
	fmt.Fprintf(env.stdout, "registrar $%08x: %d pool(s), %d PE(s), handlespace checksum 0x%04x\n", d.Registrar, len(d.Pools), n, d.Total)
	homes := make([]uint32, 0, len(d.Checksums))
	for h := range d.Checksums {
		homes = append(homes, h)
	}
	sort.Slice(homes, func(i, j int) bool { return homes[i] < homes[j] })
	for _, h := range homes {
		fmt.Fprintf(env.stdout, "  owner $%08x: checksum 0x%04x\n", h, d.Checksums[h])
	}
	for _, p := range d.Pools {
		fmt.Fprintf(env.stdout, "pool %q: %d PE(s)\n", p.Handle, len(p.PEs))
		for _, pe := range p.PEs {
			fmt.Fprintf(env.stdout, "  $%08x  %-21s  home $%08x  %s  lifetime %v\n", pe.ID, pe.Addr, pe.Home, policyString(pe), pe.Lifetime)
		}
	}
	return nil
}

// policyValues returns the policy values a PE carries on the wire.
func policyValues(p asap.PEInfo) ([]string, []uint32) {
	w := wire.Policy{Type: wire.PolicyType(p.Policy.Type), Weight: p.Policy.Weight, Load: p.Policy.Load,
		LoadDegradation: p.Policy.LoadDegradation, LoadDPF: p.Policy.LoadDPF, WeightDPF: p.Policy.WeightDPF,
		Distance: p.Policy.Distance}
	if p.Policy.Type == policy.TypePriority {
		w.Priority, w.Weight = p.Policy.Weight, 0
	}
	return w.Values()
}

func policyString(p asap.PEInfo) string {
	names, vals := policyValues(p)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s=%d", n, vals[i])
	}
	return fmt.Sprintf("%s(%s)", p.Policy.Type, strings.Join(parts, ","))
}
