package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rspxdp/rspxdp/asap"
	"github.com/rspxdp/rspxdp/node"
)

const puUsage = `Usage: rspxdp pu --pool HANDLE --registrar ADDR[,ADDR] ACTION [flags]

Acts as a pool user of the pool HANDLE.

Actions:
  resolve  asks a registrar for the pool's PEs and prints them (--json for
           a machine-readable list)
  echo     opens a session with the pool (a PE running --service echo) and
           sends --count numbered lines, one every --interval, printing
           each answer with the PE that gave it. When the PE dies the
           session fails over to another PE, echoing the last ASAP Cookie
           to it, and prints the failover with the time it took; the line
           in flight is sent again. Exits 0 once every line was answered.
  bench    load-tests one registrar's handle resolution: opens
           --connections associations to the first --registrar and keeps
           up to --outstanding Handle Resolutions (plain RFC 5352 ASAP, so
           any registrar, rsplib's rspregistrar too, answers it) in flight
           on each, as fast as the answers come (the window is topped up,
           in one write, whenever half of it is answered), for --duration
           or --count
           answers (whichever ends first; --count alone counts answers,
           --duration defaults to 10s). Every answer must name the pool's
           PEs; --pes N asks for N and requires exactly the same N in every
           answer. Prints resolutions/s, latency p50/p99/max (of one answer
           in 4: where reading the clock is a system call, as in the test
           VM, one read per answer is much of the client's cost), errors and the client's own CPU time
           (--json: one object); exits 1 on any error or when nothing was
           answered.

Examples:
  rspxdp pu --pool echo --registrar 127.0.0.1:3863 resolve
  rspxdp pu --pool echo --registrar 127.0.0.1:3863,127.0.0.1:3864 resolve --json
  rspxdp pu --pool echo --registrar 10.0.0.1:3863 --transport sctp resolve
  rspxdp pu --pool echo --registrar 127.0.0.1:3863 echo --count 100 --interval 100ms
  rspxdp pu --pool echo --registrar 10.0.0.1:3863 --transport sctp bench --connections 4 --outstanding 2 --pes 3 --duration 10s`

func runPU(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "pu", puUsage)
	pool := fs.String("pool", "", "pool handle (required)")
	var regs listFlag
	fs.Var(&regs, "registrar", "registrar ASAP address HOST:PORT (repeatable or comma-separated)")
	announces := fs.String("announces", "", "also learn registrars from ASAP Server Announces on this UDP address")
	asJSON := fs.Bool("json", false, "resolve: print JSON")
	count := fs.Int("count", 10, "echo: lines to send; bench: answers to wait for (default: no limit but --duration)")
	interval := fs.Duration("interval", 200*time.Millisecond, "echo: pause between lines")
	timeout := fs.Duration("timeout", time.Second, "echo: an answer later than this counts as a PE failure")
	staleness := fs.Duration("cache-staleness", asap.DefaultCacheStaleness, "reuse a resolution this long")
	setDefault(fs, "log-level", "warn")
	tf := addTLSFlags(fs)
	conns := newCount(fs, "connections", 1, "bench: associations to the registrar")
	outstanding := newCount(fs, "outstanding", 1, "bench: requests in flight per association")
	duration := newDuration(fs, "duration", 10*time.Second, "bench: how long to run (0: until --count answers)")
	wantPEs := newCount(fs, "pes", 0, "bench: PEs every answer must name, the same ones each time (0: any, at least one)")
	asapTr := fs.String("transport", "tcp", "ASAP transport to registrars: tcp, sctp (needs kernel SCTP; what rsplib's rspregistrar speaks) or auto")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("missing action: resolve, echo or bench")
	}
	action := fs.Arg(0)
	if fs.NArg() > 1 {
		return usagef("unexpected argument %q", fs.Arg(1))
	}
	if *pool == "" {
		return usagef("--pool is required")
	}
	if err := node.CheckHandle(*pool); err != nil {
		return usagef("--pool: %v", err)
	}
	if len(regs) == 0 && *announces == "" {
		return usagef("give --registrar or --announces")
	}
	if err := checkHostPorts("--registrar", regs); err != nil {
		return err
	}
	if *count <= 0 {
		return usagef("--count must be positive")
	}
	if action == "bench" {
		return runBench(ctx, env, fs, benchConfig{pool: *pool, registrar: firstOf(regs), connections: *conns, outstanding: *outstanding,
			count: *count, duration: *duration, pes: *wantPEs, asJSON: *asJSON}, *asapTr, tf)
	}
	log := env.logger()
	trOpt, err := asapTransportOption(env, *asapTr, tf, log, "pu")
	if err != nil {
		return err
	}
	opts := []asap.Option{asap.WithRegistrars(regs...), asap.WithLogger(log), asap.WithCacheStaleness(*staleness), trOpt}
	if *announces != "" {
		opts = append(opts, asap.WithAnnounces(*announces))
	}
	switch action {
	case "resolve":
		return puResolve(ctx, env, *pool, *asJSON, opts)
	case "echo":
		return puEcho(ctx, env, *pool, *count, *interval, *timeout, opts)
	}
	return usagef("unknown action %q: want resolve, echo or bench", action)
}

func puResolve(ctx context.Context, env *cliEnv, pool string, asJSON bool, opts []asap.Option) error {
	u, err := asap.NewPoolUser(opts...)
	if err != nil {
		return err
	}
	defer u.Close()
	pes, err := u.Resolve(ctx, pool)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(jsonPEs(pes))
	}
	fmt.Fprintf(env.stdout, "pool %q: %d PE(s)\n", pool, len(pes))
	for _, p := range pes {
		fmt.Fprintf(env.stdout, "  0x%08x  %-21s  home 0x%08x  %s\n", p.ID, p.Addr, p.Home, policyString(p))
	}
	return nil
}

// jsonPE is a PE as the JSON outputs print it.
type jsonPE struct {
	ID       string            `json:"id"`
	Addr     string            `json:"addr"`
	Home     string            `json:"home"`
	Policy   string            `json:"policy"`
	Settings string            `json:"settings"` // as entered: "lu:20%"
	Values   map[string]uint32 `json:"values,omitempty"`
	Lifetime string            `json:"lifetime"`
	ASAP     string            `json:"asap,omitempty"`
}

func jsonPEs(pes []asap.PEInfo) []jsonPE {
	out := make([]jsonPE, 0, len(pes))
	for _, p := range pes {
		j := jsonPE{ID: fmt.Sprintf("0x%08x", p.ID), Addr: p.Addr.String(), Home: fmt.Sprintf("0x%08x", p.Home),
			Policy: p.Policy.Type.String(), Settings: asap.FormatPolicy(p.Policy), Lifetime: p.Lifetime.String()}
		if p.ASAP.IsValid() {
			j.ASAP = p.ASAP.String()
		}
		names, vals := policyValues(p)
		if len(names) > 0 {
			j.Values = map[string]uint32{}
			for i, n := range names {
				j.Values[n] = vals[i]
			}
		}
		out = append(out, j)
	}
	return out
}

func puEcho(ctx context.Context, env *cliEnv, pool string, count int, interval, timeout time.Duration, opts []asap.Option) error {
	c, err := asap.Dial(ctx, pool, opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(env.stdout, "session with pool %q on PE %s\n", pool, c.PE())
	r := bufio.NewReader(c)
	failovers := 0
	for i := 1; i <= count; i++ {
		line := fmt.Sprintf("line %d", i)
		sent := time.Now()
		for try := 0; ; try++ {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			ans, err := echoOnce(c, r, line, timeout)
			if err == nil {
				fmt.Fprintf(env.stdout, "%s: answer from PE 0x%08x in %v: %s\n", line, c.PE().ID,
					time.Since(sent).Round(time.Microsecond), strings.TrimSpace(ans))
				break
			}
			var fe *asap.FailoverError
			if !errors.As(err, &fe) || try >= 8 {
				return fmt.Errorf("%s: %w", line, err)
			}
			failovers++
			r.Reset(c) // bytes of the old PE's session are gone with it
			fmt.Fprintf(env.stdout, "FAILOVER %s\n", fe.Event)
		}
		if i < count {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(interval):
			}
		}
	}
	fmt.Fprintf(env.stdout, "done: %d lines answered, %d failover(s), last cookie %q\n", count, failovers, strings.TrimRight(string(c.Cookie()), "\x00"))
	return nil
}

// echoOnce sends line and reads the answer within timeout; a late answer
// makes the Conn fail over (a hung PE looks like a dead one).
func echoOnce(c *asap.Conn, r *bufio.Reader, line string, timeout time.Duration) (string, error) {
	if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	ans, err := r.ReadString('\n')
	_ = c.SetReadDeadline(time.Time{})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "", c.Failover(fmt.Errorf("no answer within %v", timeout))
	}
	return ans, err
}
