package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/rspxdp/rspxdp/asap"
	"github.com/rspxdp/rspxdp/bgp"
	"github.com/rspxdp/rspxdp/node"
	"github.com/rspxdp/rspxdp/selector/policy"
	"github.com/rspxdp/rspxdp/wire"
)

const statusUsage = `Usage: rspxdp status --registrar ENRP-ADDR [--json]
       rspxdp status --node METRICS-ADDR [--json]

Dumps a registrar's handlespace, the operator's equivalent of rsplib's
hsdump: every pool with its PEs (identifier, user address, home registrar,
policy and values, lifetime) and the RFC 5353 checksum over the PEs of
each home registrar, as ENRP Presence carries it. Comparing the checksums
of two registrars shows whether they agree.

The dump is read with ENRP Handle Table Requests, so --registrar is the
registrar's ENRP address (port 9901 by default), not its ASAP one.

With --node, it shows an rspxdp node's data plane instead, read from its
metrics listener (/status): per VIP, the PEs the XDP maps hold with their
state (active, draining, down), weight and packet, byte and new-flow
counters, and the connection table's and drops' counters; and its BGP
sessions (state per peer), which VIPs it announces or withdrew and why,
and its withdrawals by reason.

Examples:
  rspxdp status --registrar 127.0.0.1:9901
  rspxdp status --registrar 10.0.0.1:9901 --json | jq '.pools[].handle'
  rspxdp status --registrar 10.0.0.1:9901 --transport sctp
  # A registrar with TLS: a certificate its policy lets peer.
  rspxdp status --registrar 10.0.0.1:9901 --tls-ca pki/ca.pem \
      --tls-cert pki/registrar-r2.pem --tls-key pki/registrar-r2-key.pem
  rspxdp status --node 127.0.0.1:9464`

func runStatus(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "status", statusUsage)
	reg := fs.String("registrar", "", "registrar ENRP address HOST:PORT")
	nodeAddr := fs.String("node", "", "rspxdp node metrics address HOST:PORT: show its data plane")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	tr := fs.String("transport", "tcp", "ENRP transport to the registrar: tcp, sctp (needs kernel SCTP; what rsplib's rspregistrar speaks) or auto")
	tf := addTLSFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if (*reg == "") == (*nodeAddr == "") {
		return usagef("give one of --registrar or --node")
	}
	if *nodeAddr != "" {
		if err := checkHostPorts("--node", []string{*nodeAddr}); err != nil {
			return err
		}
		return nodeStatus(ctx, env, *nodeAddr, *asJSON, *timeout)
	}
	if err := checkHostPorts("--registrar", []string{*reg}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	setDefault(fs, "log-level", "error")
	log := env.logger()
	// A registrar with TLS serves ENRP to peer identities alone: the
	// certificate must be one its policy lets peer (a registrar's).
	trOpt, err := asapTransportOption(env, *tr, tf, log, "")
	if err != nil {
		return err
	}
	d, err := asap.DumpHandlespace(ctx, *reg, asap.WithLogger(log), trOpt)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("registrar %s sent no complete handle table within --timeout %v (is %s its ENRP port? a TLS registrar needs --tls-*)",
			*reg, *timeout, *reg)
	}
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
		}{Registrar: fmt.Sprintf("0x%08x", d.Registrar), Pools: []pool{}, Checksums: map[string]string{},
			Total: fmt.Sprintf("0x%04x", d.Total)}
		for _, p := range d.Pools {
			out.Pools = append(out.Pools, pool{Handle: p.Handle, PEs: jsonPEs(p.PEs)})
		}
		for h, c := range d.Checksums {
			out.Checksums[fmt.Sprintf("0x%08x", h)] = fmt.Sprintf("0x%04x", c)
		}
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	n := 0
	for _, p := range d.Pools {
		n += len(p.PEs)
	}
	fmt.Fprintf(env.stdout, "registrar 0x%08x: %d pool(s), %d PE(s), handlespace checksum 0x%04x\n", d.Registrar, len(d.Pools), n, d.Total)
	homes := make([]uint32, 0, len(d.Checksums))
	for h := range d.Checksums {
		homes = append(homes, h)
	}
	sort.Slice(homes, func(i, j int) bool { return homes[i] < homes[j] })
	for _, h := range homes {
		fmt.Fprintf(env.stdout, "  owner 0x%08x: checksum 0x%04x\n", h, d.Checksums[h])
	}
	for _, p := range d.Pools {
		fmt.Fprintf(env.stdout, "pool %q: %d PE(s)\n", p.Handle, len(p.PEs))
		for _, pe := range p.PEs {
			fmt.Fprintf(env.stdout, "  0x%08x  %-21s  home 0x%08x  %s  lifetime %v\n", pe.ID, pe.Addr, pe.Home, policyString(pe), pe.Lifetime)
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

// policyString shows a PE's policy as an operator enters it: "lu:20%".
func policyString(p asap.PEInfo) string { return asap.FormatPolicy(p.Policy) }

// nodeStatus prints the data plane of an rspxdp node from its /status.
func nodeStatus(ctx context.Context, env *cliEnv, addr string, asJSON bool, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return usagef("--node %q: %v", addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("node %s unreachable: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("node %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("node %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(body)))
	}
	if asJSON {
		_, err := env.stdout.Write(body)
		return err
	}
	var st node.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("node %s: not an rspxdp node's status: %w", addr, err)
	}
	fmt.Fprintf(env.stdout, "node 0x%08x: %d pool(s), %d ENRP peer(s)\n", st.RegistrarID, st.Pools, len(st.Peers))
	d := st.Dataplane
	fmt.Fprintf(env.stdout, "data plane: conn table %d hits, %d misses, %d re-steered; flood guard %d; drops: no PE %d, bad header %d, too big %d, control port %d, undeliverable %d\n",
		d.ConnHits, d.ConnMisses, d.Resteered, d.FloodSkipped, d.DropNoPE, d.DropBadHeader, d.DropTooBig, d.DropControl, d.DropUndeliverable)
	for _, v := range st.VIPs {
		fmt.Fprintf(env.stdout, "vip %s -> pool %q: %d packets, %d bytes\n", v.VIP, v.Pool, v.Packets, v.Bytes)
		if len(v.PEs) == 0 {
			fmt.Fprintln(env.stdout, "  (no PEs: packets are dropped as 'no PE')")
			continue
		}
		fmt.Fprintf(env.stdout, "  %-10s  %-39s  %-8s  %6s  %10s  %12s  %9s\n", "PE", "address", "state", "weight", "packets", "bytes", "new flows")
		for _, p := range v.PEs {
			fmt.Fprintf(env.stdout, "  0x%08x   %-39s  %-8s  %6d  %10d  %12d  %9d\n", p.ID, p.Addr, p.State, p.Weight, p.Packets, p.Bytes, p.NewFlows)
		}
	}
	printBGPStatus(env.stdout, st.BGP)
	return nil
}

// printBGPStatus prints the node's BGP sessions and announcements.
func printBGPStatus(w io.Writer, b *bgp.Status) {
	if b == nil {
		fmt.Fprintln(w, "bgp: off")
		return
	}
	fmt.Fprintf(w, "bgp: AS %d, router id %s\n", b.ASN, b.RouterID)
	for _, p := range b.Peers {
		fmt.Fprintf(w, "  peer %-39s AS %-10d %-11s since %s\n", p.Address, p.ASN, p.State, p.Since.Format(time.RFC3339))
	}
	for _, v := range b.VIPs {
		state := "withdrawn"
		if v.Announced {
			state = "announced"
		}
		fmt.Fprintf(w, "  vip  %-39s %-9s (%s)\n", v.Prefix, state, v.Reason)
	}
	reasons := make([]string, 0, len(b.Withdrawals))
	for r, n := range b.Withdrawals {
		reasons = append(reasons, fmt.Sprintf("%s %d", r, n))
	}
	sort.Strings(reasons)
	if len(reasons) == 0 {
		reasons = append(reasons, "none")
	}
	fmt.Fprintf(w, "  withdrawals: %s\n", strings.Join(reasons, ", "))
}
