package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/asap"
	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/selector/policy"
	"github.com/rspxdp/rspxdp/transport"
)

// TestPUBench: `pu bench` against an in-process registrar over TCP counts
// exactly --count answers, each naming the pool's two PEs, and reports them
// in JSON on stdout alone; an unknown pool and a wrong --pes are errors
// (exit 1) after the figures; bad flags are usage errors.
func TestPUBench(t *testing.T) {
	asapAddr, _ := startTestRegistrar(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ids []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		pe, err := asap.Register(ctx, "bench", ln, asap.WithRegistrars(asapAddr),
			asap.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		if err != nil {
			t.Fatal(err)
		}
		defer pe.Close()
		ids = append(ids, fmt.Sprintf("0x%08x", pe.ID()))
	}
	slices.Sort(ids)

	code, out, errs := runCLI(t, "pu", "--pool", "bench", "--registrar", asapAddr, "bench",
		"--count", "300", "--connections", "3", "--outstanding", "4", "--pes", "2", "--json")
	var r benchResult
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("pu bench --json: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if r.Resolutions != 300 || r.Errors != 0 || !slices.Equal(r.PEs, ids) || r.Rate <= 0 || r.P50Micros <= 0 ||
		r.P99Micros < r.P50Micros || r.Connections != 3 || r.Outstanding != 4 || r.Transport != "tcp" {
		t.Errorf("pu bench: %+v, want 300 answers, no error, PEs %v", r, ids)
	}

	code, out, _ = runCLI(t, "pu", "--pool", "bench", "--registrar", asapAddr, "bench", "--duration", "200ms", "--pes", "2")
	if code != 0 || !strings.Contains(out, "resolutions: ") || !strings.Contains(out, "errors: 0") || !strings.Contains(out, ids[0]) {
		t.Errorf("pu bench --duration: exit %d\n%s", code, out)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--pool", "nothere", "bench", "--count", "5"}, 1, "unknown pool handle"},
		{[]string{"--pool", "bench", "bench", "--count", "5", "--pes", "3"}, 1, "answer names 2 PEs, want 3"},
		{[]string{"--pool", "bench", "bench", "--duration", "0"}, 2, "bench needs a bound"},
		{[]string{"--pool", "bench", "bench", "--connections", "0", "--count", "1"}, 2, "--connections must be positive"},
		{[]string{"--pool", "bench", "bench", "--outstanding", "-1"}, 2, "--outstanding"},
		{[]string{"--pool", "bench", "bench", "--count", "1", "--tls-ca", "x"}, 2, "plain ASAP"},
	} {
		code, _, errs := runCLI(t, append([]string{"pu", "--registrar", asapAddr}, tc.args...)...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("pu %v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
}

// scriptedConn answers each request with the next of its answers.
type scriptedConn struct {
	answers [][]byte
	sent    int
	read    int
}

func (c *scriptedConn) WriteMessage(context.Context, []byte) error { c.sent++; return nil }
func (c *scriptedConn) ReadMessage(ctx context.Context) ([]byte, error) {
	if c.read >= c.sent || c.read >= len(c.answers) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	c.read++
	return c.answers[c.read-1], nil
}
func (c *scriptedConn) Close() error             { return nil }
func (c *scriptedConn) LocalAddr() net.Addr      { return nil }
func (c *scriptedConn) RemoteAddr() net.Addr     { return nil }
func (c *scriptedConn) Peer() transport.Identity { return transport.Identity{} }

// TestBenchChecksEveryAnswer: answers equal to one already checked skip
// decoding, but any other answer is checked in full, however late it comes
// and however often a good one came before.
func TestBenchChecksEveryAnswer(t *testing.T) {
	pe := func(id uint32) msg.PoolElement {
		return msg.PoolElement{ID: id, Home: 1, Lifetime: 30 * time.Second, Transport: selector.Transport{
			Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, Port: uint16(id), Protocol: selector.TCP, Use: selector.DataOnly},
			Policy: policy.RoundRobin()}
	}
	answer := func(ids ...uint32) []byte {
		r := msg.HandleResolutionResponse{Handle: "p", PolicyType: 1}
		for _, id := range ids {
			r.PEs = append(r.PEs, pe(id))
		}
		b, err := msg.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good, rotated := answer(1, 2, 3), answer(2, 3, 1)
	for _, tc := range []struct {
		name    string
		answers [][]byte
		errs    int64
	}{
		{"repeats of good answers", [][]byte{good, good, rotated, good, rotated, good}, 0},
		{"a short answer after good ones", [][]byte{good, good, good, answer(1, 2), good}, 1},
		{"another PE set after good ones", [][]byte{good, rotated, answer(1, 2, 4), good}, 1},
		{"a PE twice", [][]byte{good, answer(1, 2, 2), good}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var budget atomic.Int64
			budget.Store(int64(len(tc.answers)))
			cfg := benchConfig{count: len(tc.answers), outstanding: 2, pes: 3}
			var ref pesRef
			c := &scriptedConn{answers: tc.answers}
			out := benchOne(ctx, c, []byte("req"), cfg, &budget, &ref)
			if out.errs != tc.errs || out.n+out.errs != int64(len(tc.answers)) {
				t.Fatalf("%d errors (first %v), %d answers counted; want %d errors of %d answers",
					out.errs, out.first, out.n, tc.errs, len(tc.answers))
			}
			if want := (len(tc.answers) + latencyEvery - 1) / latencyEvery; len(out.lat) > want || len(out.lat) == 0 {
				t.Fatalf("%d latency samples of %d answers, want 1-%d", len(out.lat), len(tc.answers), want)
			}
		})
	}
}
