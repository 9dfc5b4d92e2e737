package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/wire"
	"github.com/rspxdp/rspxdp/wire/wiretest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// writeSamplePcap writes, deterministically, every sample message over
// SCTP, a Registration over UDP, two messages in one TCP stream and, in
// the middle, one message whose pool handle length runs past its end.
func writeSamplePcap(t *testing.T) string {
	t.Helper()
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	msgs := wiretest.Messages()
	enc := wiretest.Encode(msgs)
	var pkts [][]byte
	for i, m := range msgs {
		ppid, port := uint32(wire.PPIDASAP), uint16(wire.PortASAP)
		if m.Protocol == wire.ENRP {
			ppid, port = wire.PPIDENRP, wire.PortENRP
		}
		pkts = append(pkts, wiretest.SCTPPacket(a, b, 40000, port, uint32(i+1), ppid, enc[i]))
		if i == 2 {
			broken := append([]byte(nil), enc[0]...)
			broken[6], broken[7] = 0x01, 0x00
			pkts = append(pkts, wiretest.SCTPPacket(a, b, 40000, port, 1000, ppid, broken))
		}
	}
	pkts = append(pkts, wiretest.UDPPacket(a, b, 50000, wire.PortASAP, enc[0]))
	stream := append(append([]byte(nil), enc[0]...), enc[1]...)
	pkts = append(pkts,
		wiretest.TCPPacket(a, b, 45000, wire.PortASAP, 100, 0x02, nil),
		wiretest.TCPPacket(a, b, 45000, wire.PortASAP, 101, 0x18, stream[:7]),
		wiretest.TCPPacket(a, b, 45000, wire.PortASAP, 108, 0x18, stream[7:]))
	path := filepath.Join(t.TempDir(), "samples.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for i, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(p), Length: len(p)}
		if err := w.WritePacket(ci, p); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\ngot:\n%s", path, got)
	}
}

func TestDecodeGolden(t *testing.T) {
	path := writeSamplePcap(t)
	nMsgs := len(wiretest.Messages()) + 1 + 1 + 2
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"decode.golden", []string{"decode", path}},
		{"decode-json.golden", []string{"decode", "--json", path}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCLI(t, tc.args...)
			// The broken message makes the run fail, after every other
			// message was printed.
			if code != 1 || !strings.Contains(errs, "1 of ") || !strings.Contains(errs, "messages did not decode") {
				t.Errorf("exit %d, stderr %q; want 1 and a count of failures", code, errs)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != nMsgs {
				t.Errorf("%d lines, want %d", len(lines), nMsgs)
			}
			golden(t, tc.name, out)
		})
	}
}

func TestDecodeJSONFields(t *testing.T) {
	path := writeSamplePcap(t)
	_, out, _ := runCLI(t, "decode", "--json", path)
	var errors, tcp, udp int
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var o map[string]any
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i+1, err, line)
		}
		if e, ok := o["error"].(string); ok {
			errors++
			if !strings.Contains(e, "PoolHandle") || o["raw"] == "" {
				t.Errorf("error line lacks the field name or raw bytes: %s", line)
			}
			continue
		}
		switch o["transport"] {
		case "TCP":
			tcp++
		case "UDP":
			udp++
		}
		if i == 0 {
			ps := o["params"].([]any)
			pe := ps[1].(map[string]any)["pool_element"].(map[string]any)
			pol := pe["policy"].(map[string]any)
			if o["type"] != "Registration" || ps[0].(map[string]any)["pool_handle"] != wiretest.PoolHandle ||
				pe["id"] != wire.FormatID(wiretest.PEID) || pol["type"] != "WRR" || pol["weight"] != float64(5) {
				t.Errorf("first message: %s", line)
			}
		}
	}
	if errors != 1 || tcp != 2 || udp != 1 {
		t.Errorf("errors %d tcp %d udp %d, want 1 2 1", errors, tcp, udp)
	}
}

// TestDecodeRsplib runs the tool over the reference capture: every
// message must decode, in both output forms.
func TestDecodeRsplib(t *testing.T) {
	path := testenv.SharedFixture(t, "rsplib-3.4.4-rfc.pcap")
	code, out, errs := runCLI(t, "decode", "--json", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	types := map[string]int{}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, line := range lines {
		var o struct {
			Protocol, Type, Error string
		}
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("not JSON: %v: %s", err, line)
		}
		if o.Error != "" {
			t.Errorf("error: %s", line)
		}
		types[o.Protocol+" "+o.Type]++
	}
	if len(lines) != 2233 || len(types) < 20 {
		t.Errorf("%d messages of %d types, want 2233 of at least 20: %v", len(lines), len(types), types)
	}
	code, out, _ = runCLI(t, "decode", path)
	if n := strings.Count(out, "\n"); code != 0 || n != 2233 || strings.Contains(out, "ERROR") {
		t.Errorf("text form: exit %d, %d lines", code, n)
	}
}

func TestDecodeUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		in   string
	}{
		{[]string{"decode"}, 2, "exactly one capture file"},
		{[]string{"decode", "a", "b"}, 2, "exactly one capture file"},
		{[]string{"decode", "--bogus", "a"}, 2, "unknown flag: --bogus"},
		{[]string{"decode", filepath.Join(t.TempDir(), "missing.pcap")}, 1, "no such file"},
		{[]string{"decode", "decode_test.go"}, 1, "open capture"},
	} {
		code, _, errs := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.in) {
			t.Errorf("%v: exit %d stderr %q; want %d and %q", tc.args, code, errs, tc.code, tc.in)
		}
	}
	code, out, _ := runCLI(t, "decode", "--help")
	if code != 0 || !strings.Contains(out, "Examples:") || !strings.Contains(out, "-json") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
}

// A capture cut in the middle of a packet (tcpdump killed, a disk full)
// prints what it holds, then warns and exits 1.
func TestDecodeTruncatedCapture(t *testing.T) {
	path := writeSamplePcap(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.pcap")
	if err := os.WriteFile(cut, b[:len(b)-5], 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "decode", cut)
	if code != 1 || !strings.Contains(errs, "warning: ") || !strings.Contains(errs, "truncated after frame") {
		t.Errorf("exit %d, stderr %q; want 1 and a truncation warning", code, errs)
	}
	if n := strings.Count(out, "\n"); n < len(wiretest.Messages()) {
		t.Errorf("only %d messages printed before the cut", n)
	}
}

// Text lines start with the frame number and the seconds since the first
// message.
func TestDecodeTextFramesAndRelativeTimes(t *testing.T) {
	_, out, _ := runCLI(t, "decode", writeSamplePcap(t))
	lines := strings.Split(out, "\n")
	for i, want := range []string{"    1    0.000000 2026-11-22T12:00:00.000000Z ", "    2    0.001000 ", "    3    0.002000 "} {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d = %q, want prefix %q", i+1, lines[i], want)
		}
	}
}

// TestDecodeStdinAndFlagsAfter: "-" reads the capture from stdin, and
// flags may follow the file, as the README writes them.
func TestDecodeStdinAndFlagsAfter(t *testing.T) {
	path := writeSamplePcap(t)
	_, want, _ := runCLI(t, "decode", "--json", path)
	_, after, _ := runCLI(t, "decode", path, "--json")
	if after != want {
		t.Errorf("decode FILE --json differs from decode --json FILE")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	run(context.Background(), &cliEnv{stdout: &out, stderr: &errb, stdin: bytes.NewReader(b)}, []string{"decode", "-", "--json"})
	if out.String() != want {
		t.Errorf("decode - read from stdin:\n%s\nwant\n%s\nstderr %s", out.String(), want, errb.String())
	}
}
