package vm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/testenv"
)

// The guest's site-local IPv4 address (vm/run.sh writes it into the guest's
// env; rsplib refuses loopback-only addresses).
const guestAddr4 = "10.99.0.1"

// skipCode is what a guest scenario exits with when the rspxdp feature it
// exercises does not exist yet (automake's "skipped").
const skipCode = 77

// entry is one line of the guest's status file: "kind name rc seconds".
type entry struct {
	kind, name string
	rc         int
	seconds    float64
}

// parseStatus reads the guest's status file.
func parseStatus(b []byte) (map[string]entry, error) {
	out := map[string]entry{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 4 {
			return nil, fmt.Errorf("status line %d %q: want 4 fields", n, sc.Text())
		}
		rc, err := strconv.Atoi(f[2])
		if err != nil {
			return nil, fmt.Errorf("status line %d: exit status: %w", n, err)
		}
		secs, err := strconv.ParseFloat(f[3], 64)
		if err != nil {
			return nil, fmt.Errorf("status line %d: seconds: %w", n, err)
		}
		out[f[0]+" "+f[1]] = entry{kind: f[0], name: f[1], rc: rc, seconds: secs}
	}
	return out, sc.Err()
}

// guestRun is what one boot of the VM brought back.
type guestRun struct {
	dir      string // vm/run.sh's output directory
	status   map[string]entry
	packages []string // the Go packages whose test binaries were sent in
	wall     time.Duration
}

var (
	bootOnce sync.Once
	booted   *guestRun
	bootErr  error
)

// guest boots the VM on first use and returns its results to every test. The
// boot is opt-in (RSPXDP_VM=1, which `make vmtest` sets) because it takes
// minutes; once opted in, a missing qemu, mmdebstrap or root fails in CI and
// skips elsewhere, like every other prerequisite.
func guest(t *testing.T) *guestRun {
	t.Helper()
	if os.Getenv("RSPXDP_VM") != "1" {
		t.Skip("boots a Debian VM for SCTP and rsplib interop: run `make vmtest` (RSPXDP_VM=1)")
	}
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "qemu-system-x86_64", "qemu-system-x86")
	testenv.RequireCommand(t, "mmdebstrap", "mmdebstrap")
	testenv.RequireCommand(t, "mke2fs", "e2fsprogs")
	bootOnce.Do(func() { booted, bootErr = boot() })
	if bootErr != nil {
		t.Fatalf("test VM: %v", bootErr)
	}
	return booted
}

// boot runs vm/run.sh once. Its output (the guest's console as it happens)
// goes straight to stdout so a long run shows progress under go test -v.
func boot() (*guestRun, error) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		return nil, err
	}
	out := os.Getenv("RSPXDP_VM_OUT")
	if out == "" {
		out = filepath.Join(root, "bin", "vm-results")
	}
	pkgs := strings.Fields(os.Getenv("RSPXDP_VM_PACKAGES"))
	if len(pkgs) == 0 {
		pkgs = []string{"./transport"}
	}
	limit := 900
	if v := os.Getenv("RSPXDP_VM_TIMEOUT"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil {
			return nil, fmt.Errorf("RSPXDP_VM_TIMEOUT=%q: %w", v, err)
		}
	}
	// The script bounds the guest; this bounds the image build and the
	// compiles around it too.
	// A stale status from an earlier run must never be read as this one's.
	if err := os.RemoveAll(out); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(limit)*time.Second+10*time.Minute)
	defer cancel()
	args := append([]string{"-o", out, "-t", strconv.Itoa(limit)}, pkgs...)
	cmd := exec.CommandContext(ctx, filepath.Join(root, "vm", "run.sh"), args...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	cmd.WaitDelay = 30 * time.Second
	start := time.Now()
	runErr := cmd.Run() // non-zero when a guest test failed; judged per test below
	b, err := os.ReadFile(filepath.Join(out, "status"))
	if err != nil {
		return nil, fmt.Errorf("vm/run.sh (%v) left no guest status: %w", runErr, err)
	}
	st, err := parseStatus(b)
	if err != nil {
		return nil, fmt.Errorf("guest status: %w", err)
	}
	return &guestRun{dir: out, status: st, packages: pkgs, wall: time.Since(start)}, nil
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("guest result: %v", err)
	}
	return string(b)
}

// TestGuestSetup checks the guest became what the scenarios assume: SCTP
// loaded, site-local addresses up; and reports the measured times.
func TestGuestSetup(t *testing.T) {
	g := guest(t)
	for _, name := range []string{"modprobe-sctp", "address"} {
		e, ok := g.status["setup "+name]
		if !ok || e.rc != 0 {
			t.Errorf("guest setup step %s: %+v (present %v)", name, e, ok)
		}
	}
	timing := readFile(t, filepath.Join(g.dir, "host-timing"))
	console := readFile(t, filepath.Join(g.dir, "console.log"))
	bootLine := regexp.MustCompile(`boot-to-init ([0-9.]+) s`).FindStringSubmatch(console)
	if bootLine == nil {
		t.Errorf("console has no boot-to-init line")
	} else {
		t.Logf("guest kernel boot to init: %s s", bootLine[1])
	}
	t.Logf("vm/run.sh wall time %v; %s", g.wall.Round(time.Second), strings.ReplaceAll(strings.TrimSpace(timing), "\n", ", "))
}

// TestGuestTestBinaries asserts that every package's test binary passed in
// the guest, where kernel SCTP exists and RSPXDP_VMTEST=1 makes SCTP tests
// fail rather than skip.
func TestGuestTestBinaries(t *testing.T) {
	g := guest(t)
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range g.packages {
		t.Run(strings.Trim(pkg, "./"), func(t *testing.T) {
			list := exec.Command("go", "list", "-e", "-f", "{{.Dir}} {{len .TestGoFiles}} {{len .XTestGoFiles}}", pkg)
			list.Dir = root
			out, err := list.Output()
			if err != nil {
				t.Fatalf("go list %s: %v", pkg, err)
			}
			f := strings.Fields(string(out))
			if f[1] == "0" && f[2] == "0" {
				t.Skipf("%s has no tests", pkg)
			}
			rel, err := filepath.Rel(root, f[0])
			if err != nil {
				t.Fatal(err)
			}
			name := strings.ReplaceAll(rel, string(filepath.Separator), "_")
			e, ok := g.status["test "+name]
			if !ok {
				t.Fatalf("the guest did not run %s's tests (status has no %q)", pkg, "test "+name)
			}
			log := readFile(t, filepath.Join(g.dir, "tests", name+".log"))
			if e.rc != 0 {
				t.Errorf("%s's tests failed in the guest (exit %d, %.1fs); failures:\n%s", pkg, e.rc, e.seconds, failures(log))
			}
			t.Logf("%s: %d passed, %d skipped, %d failed in %.1fs", pkg,
				strings.Count(log, "--- PASS"), strings.Count(log, "--- SKIP"), strings.Count(log, "--- FAIL"), e.seconds)
		})
	}
}

// failures picks the failure lines and what the tests logged just before.
func failures(log string) string {
	lines := strings.Split(log, "\n")
	var b strings.Builder
	for i, l := range lines {
		if strings.Contains(l, "--- FAIL") || strings.HasPrefix(l, "panic:") {
			for j := max(0, i-2); j <= i; j++ {
				b.WriteString(lines[j] + "\n")
			}
		}
	}
	if b.Len() == 0 {
		n := max(0, len(lines)-20)
		return strings.Join(lines[n:], "\n")
	}
	return b.String()
}

// TestGuestRanSCTP guards against the SCTP tests silently not running: the
// transport binary must have run SCTP subtests, none of them skipped.
func TestGuestRanSCTP(t *testing.T) {
	g := guest(t)
	if _, ok := g.status["test transport"]; !ok {
		t.Fatalf("./transport is not among the guest's packages %v", g.packages)
	}
	log := readFile(t, filepath.Join(g.dir, "tests", "transport.log"))
	ran := regexp.MustCompile(`(?m)^\s*--- (PASS|FAIL): \S*(?i:sctp)\S*`).FindAllString(log, -1)
	skipped := regexp.MustCompile(`(?m)^\s*--- SKIP: \S*(?i:sctp)\S*`).FindAllString(log, -1)
	if len(ran) == 0 {
		t.Errorf("no SCTP subtest ran in the guest's transport tests")
	}
	if len(skipped) > 0 {
		t.Errorf("SCTP subtests skipped in the guest, where SCTP exists: %v", skipped)
	}
	t.Logf("%d SCTP subtests ran in the guest", len(ran))
}

// scenario returns the output directory of a guest scenario after checking
// its exit status.
func scenario(t *testing.T, g *guestRun, name string) string {
	t.Helper()
	e, ok := g.status["scenario "+name]
	if !ok {
		t.Fatalf("the guest did not run scenario %s", name)
	}
	dir := filepath.Join(g.dir, "scenarios", name)
	log, _ := os.ReadFile(filepath.Join(dir, "log"))
	switch e.rc {
	case 0:
		t.Logf("scenario %s passed in the guest in %.1fs", name, e.seconds)
	case skipCode:
		t.Skipf("scenario %s: %s", name, lastLine(string(log)))
	default:
		t.Fatalf("scenario %s failed in the guest (exit %d):\n%s", name, e.rc, log)
	}
	return dir
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// TestRsplibEcho: rsplib against itself, the baseline. The registrar's own
// handle table (read by hsdump over ENRP) must hold the echo PE under its
// site-local address with the policy it registered, the pool user must have
// had its line echoed, and the capture must be clean RSerPool.
func TestRsplibEcho(t *testing.T) {
	g := guest(t)
	dir := scenario(t, g, "10-rsplib-echo")
	sent := strings.TrimSpace(readFile(t, filepath.Join(dir, "sent.txt")))
	if term := readFile(t, filepath.Join(dir, "terminal.txt")); !strings.Contains(term, "> "+sent) {
		t.Errorf("rspterminal did not get %q back from a PE:\n%s", sent, term)
	}
	hs := readFile(t, filepath.Join(dir, "hsdump.txt"))
	for _, want := range []string{
		`Pool "EchoPool", Policy "RoundRobin", Protocol SCTP`,
		"userT: {" + guestAddr4,
	} {
		if !strings.Contains(hs, want) {
			t.Errorf("registrar's handle table lacks %q:\n%s", want, hs)
		}
	}
	checkCapture(t, filepath.Join(dir, "capture.pcap"), map[int]string{
		1: "REGISTRATION", 3: "REGISTRATION_RESPONSE",
		5: "HANDLE_RESOLUTION", 6: "HANDLE_RESOLUTION_RESPONSE",
		7: "ENDPOINT_KEEP_ALIVE", 8: "ENDPOINT_KEEP_ALIVE_ACK",
	}, nil)
}

// TestRsplibServerWithRspxdpRegistrar: rsplib's rspserver registers with
// `rspxdp registrar`, rsplib's pool user resolves it through rspxdp, and a
// killed rspserver leaves rspxdp's handlespace after keep-alive failure.
func TestRsplibServerWithRspxdpRegistrar(t *testing.T) {
	g := guest(t)
	dir := scenario(t, g, "20-rsplib-pe-rspxdp-registrar")
	sent := strings.TrimSpace(readFile(t, filepath.Join(dir, "sent.txt")))
	if term := readFile(t, filepath.Join(dir, "terminal.txt")); !strings.Contains(term, "> "+sent) {
		t.Errorf("rspterminal did not get %q back through rspxdp's registrar:\n%s", sent, term)
	}
	log := readFile(t, filepath.Join(dir, "registrar.log"))
	for _, want := range []string{"pool=EchoPool", "PE removed: keep-alive timeout"} {
		if !strings.Contains(log, want) {
			t.Errorf("rspxdp registrar's log lacks %q:\n%s", want, log)
		}
	}
	t.Logf("killed PE removed after %s", strings.TrimSpace(readFile(t, filepath.Join(dir, "removal.txt"))))
	checkCapture(t, filepath.Join(dir, "capture.pcap"), map[int]string{
		1: "REGISTRATION", 3: "REGISTRATION_RESPONSE",
		5: "HANDLE_RESOLUTION", 6: "HANDLE_RESOLUTION_RESPONSE",
		7: "ENDPOINT_KEEP_ALIVE", 8: "ENDPOINT_KEEP_ALIVE_ACK",
	}, nil)
}

// TestENRPBetweenRsplibAndRspxdp: rspregistrar and `rspxdp registrar` peer
// over ENRP; a PE homed at either is served through the other; when the
// rsplib registrar dies, rspxdp takes its PE over and keeps serving it.
func TestENRPBetweenRsplibAndRspxdp(t *testing.T) {
	g := guest(t)
	const name = "30-enrp-rsplib-rspxdp"
	e, ok := g.status["scenario "+name]
	if !ok {
		t.Fatalf("the guest did not run scenario %s", name)
	}
	dir := filepath.Join(g.dir, "scenarios", name)
	log, _ := os.ReadFile(filepath.Join(dir, "log"))
	if e.rc == skipCode {
		t.Skipf("scenario %s: %s", name, lastLine(string(log)))
	}
	if e.rc != 0 {
		// Each phase is judged below; the guest's log says what it saw.
		t.Errorf("scenario %s failed in the guest (exit %d):\n%s", name, e.rc, log)
	}
	t.Run("cross", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(dir, "cross.ok")); err != nil {
			t.Errorf("a PE homed at one registrar was not served through the other")
		}
		if hs := readFile(t, filepath.Join(dir, "hsdump-rsplib.txt")); !strings.Contains(hs, `Pool "PoolX"`) {
			t.Errorf("rsplib's handle table lacks rspxdp's pool PoolX:\n%s", hs)
		}
	})
	t.Run("takeover", func(t *testing.T) {
		xlog := readFile(t, filepath.Join(dir, "rspxdp-registrar.log"))
		m := regexp.MustCompile(`takeover complete.*adoptedPEs=(\d+)`).FindStringSubmatch(xlog)
		if m == nil || m[1] == "0" {
			t.Fatalf("rspxdp's log shows no takeover adopting a PE:\n%s", xlog)
		}
		t.Logf("%s", strings.TrimSpace(readFile(t, filepath.Join(dir, "takeover.txt"))))
		if _, err := os.Stat(filepath.Join(dir, "takeover.ok")); err != nil {
			t.Errorf("the taken-over PE was not served through rspxdp 20 s later")
		}
	})
	t.Run("capture", func(t *testing.T) {
		pcap := filepath.Join(dir, "capture.pcap")
		checkCapture(t, pcap, map[int]string{
			1: "REGISTRATION", 3: "REGISTRATION_RESPONSE",
			5: "HANDLE_RESOLUTION", 6: "HANDLE_RESOLUTION_RESPONSE",
		}, map[int]string{1: "PRESENCE"})
		// Both registrars must have spoken ENRP: Presences from two senders.
		senders := map[string]bool{}
		for _, id := range tsharkFields(t, pcap)("enrp.message_type == 1", "enrp.sender_servers_id") {
			senders[id] = true
		}
		if len(senders) < 2 {
			t.Errorf("ENRP Presences from %d registrar(s) %v, want both", len(senders), senders)
		}
	})
}

// TestRspxdpPEWithRsplibRegistrar: `rspxdp pe` registers with rsplib's
// rspregistrar over ASAP/SCTP, `rspxdp pu` resolves it and echoes through it
// via rspregistrar, and rspregistrar's own handle table (hsdump, over ENRP)
// holds the PE with its identifier, policy, user transport and an SCTP
// registrator (ASAP) transport.
func TestRspxdpPEWithRsplibRegistrar(t *testing.T) {
	g := guest(t)
	dir := scenario(t, g, "40-rspxdp-pe-rsplib-registrar")
	var pes []struct {
		ID, Addr, Policy string
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, "resolve.json"))), &pes); err != nil {
		t.Fatalf("rspxdp pu resolve --json: %v", err)
	}
	if len(pes) != 1 || !strings.Contains(pes[0].ID, "4242") || pes[0].Addr != guestAddr4+":7000" {
		t.Errorf("rspxdp pu resolved %+v through rspregistrar, want the one PE $00004242 at %s:7000", pes, guestAddr4)
	}
	if echo := readFile(t, filepath.Join(dir, "echo.txt")); !strings.Contains(echo, "00004242") {
		t.Errorf("rspxdp pu echo got no answer from PE $00004242 through rspregistrar:\n%s", echo)
	}
	hs := readFile(t, filepath.Join(dir, "hsdump.txt"))
	for _, want := range []string{
		`Pool "PoolP", Policy "RoundRobin"`,
		"$00004242",
		"userT: {" + guestAddr4 + "} 7000/TCP",
	} {
		if !strings.Contains(hs, want) {
			t.Errorf("rspregistrar's handle table lacks %q:\n%s", want, hs)
		}
	}
	if !regexp.MustCompile(`regT: +\{[^}]*\} \d+/SCTP`).MatchString(hs) {
		t.Errorf("rspregistrar holds rspxdp's PE without an SCTP registrator transport:\n%s", hs)
	}
	checkCapture(t, filepath.Join(dir, "capture.pcap"), map[int]string{
		1: "REGISTRATION", 3: "REGISTRATION_RESPONSE",
		5: "HANDLE_RESOLUTION", 6: "HANDLE_RESOLUTION_RESPONSE",
		7: "ENDPOINT_KEEP_ALIVE", 8: "ENDPOINT_KEEP_ALIVE_ACK",
	}, nil)
}

// checkCapture decodes a guest capture with tshark (zero malformed packets,
// zero expert errors, every wanted ASAP message type present, ASAP on SCTP
// PPID 11) and, when this build has it, with `rspxdp decode --json`.
func checkCapture(t *testing.T, pcap string, wantASAP, wantENRP map[int]string) {
	t.Helper()
	fields := tsharkFields(t, pcap)
	if bad := fields("_ws.malformed || _ws.expert.severity == error", "frame.number"); len(bad) > 0 {
		t.Errorf("tshark: malformed or erroneous frames %v in %s", bad, pcap)
	}
	for proto, want := range map[string]map[int]string{"asap": wantASAP, "enrp": wantENRP} {
		seen := map[int]bool{}
		for _, v := range fields(proto, proto+".message_type") {
			for _, s := range strings.Split(v, ",") {
				if n, err := strconv.Atoi(s); err == nil {
					seen[n] = true
				}
			}
		}
		for typ, name := range want {
			if !seen[typ] {
				t.Errorf("capture has no %s %s (type %d); types seen %v", strings.ToUpper(proto), name, typ, seen)
			}
		}
	}
	// An Error message is one peer telling the other it disagrees.
	for filter, what := range map[string]string{
		"asap.message_type == 14": "ASAP Error", "enrp.message_type == 10": "ENRP Error",
	} {
		if errs := fields(filter, "frame.number"); len(errs) > 0 {
			t.Errorf("capture has %d %s messages (frames %v): see tshark -r %s -Y '%s' -V", len(errs), what, errs, pcap, filter)
		}
	}
	if len(fields("asap && !(sctp.data_payload_proto_id == 11)", "frame.number")) > 0 {
		t.Errorf("ASAP carried on SCTP with a PPID other than 11")
	}
	if len(fields("enrp && !(sctp.data_payload_proto_id == 12)", "frame.number")) > 0 {
		t.Errorf("ENRP carried on SCTP with a PPID other than 12")
	}
	frames := len(fields("asap || enrp", "frame.number"))
	t.Logf("tshark: %d ASAP/ENRP frames, 0 malformed", frames)
	checkDecode(t, pcap, frames)
}

// tsharkFields returns a function that lists the values of fields in the
// frames of pcap that match a display filter.
func tsharkFields(t *testing.T, pcap string) func(filter string, field ...string) []string {
	t.Helper()
	tshark := testenv.RequireCommand(t, "tshark", "tshark")
	return func(filter string, field ...string) []string {
		t.Helper()
		args := []string{"-r", pcap, "-n", "-Y", filter, "-T", "fields"}
		for _, f := range field {
			args = append(args, "-e", f)
		}
		out, err := exec.Command(tshark, args...).Output()
		if err != nil {
			t.Fatalf("tshark %s: %v", filter, err)
		}
		return strings.Fields(string(out))
	}
}

var (
	rspxdpOnce sync.Once
	rspxdpBin  string
	rspxdpErr  error
)

// checkDecode runs this tree's `rspxdp decode --json` on a capture: it must
// exit 0 and print at least one JSON record per ASAP/ENRP frame tshark saw
// (frames may bundle several messages).
func checkDecode(t *testing.T, pcap string, frames int) {
	t.Helper()
	rspxdpOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rspxdp-vmtest")
		if err != nil {
			rspxdpErr = err
			return
		}
		rspxdpBin = filepath.Join(dir, "rspxdp")
		root, _ := testenv.ModuleRoot()
		cmd := exec.Command("go", "build", "-o", rspxdpBin, "./cmd/rspxdp")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			rspxdpErr = fmt.Errorf("go build ./cmd/rspxdp: %v\n%s", err, out)
		}
	})
	if rspxdpErr != nil {
		t.Fatal(rspxdpErr)
	}
	if err := exec.Command(rspxdpBin, "decode", "--help").Run(); err != nil {
		t.Logf("rspxdp decode not in this build (%v): capture checked by tshark only", err)
		return
	}
	out, err := exec.Command(rspxdpBin, "decode", "--json", pcap).Output()
	if err != nil {
		t.Fatalf("rspxdp decode --json %s: %v", pcap, err)
	}
	records, err := countJSON(out)
	if err != nil {
		t.Fatalf("rspxdp decode --json: %v", err)
	}
	if records < frames || records == 0 {
		t.Errorf("rspxdp decode printed %d records for %d ASAP/ENRP frames", records, frames)
	}
	t.Logf("rspxdp decode: %d records", records)
}

// countJSON counts the records of a JSON array or of a stream of JSON values
// (one per line), so either output shape of the decoder is accepted.
func countJSON(b []byte) (int, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	n := 0
	for {
		var v any
		err := dec.Decode(&v)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, fmt.Errorf("record %d: %w", n+1, err)
		}
		if a, ok := v.([]any); ok {
			n += len(a)
		} else {
			n++
		}
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if rspxdpBin != "" {
		os.RemoveAll(filepath.Dir(rspxdpBin))
	}
	os.Exit(code)
}

// TestParseStatus pins the status file format shared with guest/init.
func TestParseStatus(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    map[string]entry
		wantErr bool
	}{
		{in: "", want: map[string]entry{}},
		{
			in: "setup modprobe-sctp 0 0\ntest transport 1 91.2\nscenario 10-rsplib-echo 77 3.5\n",
			want: map[string]entry{
				"setup modprobe-sctp":     {"setup", "modprobe-sctp", 0, 0},
				"test transport":          {"test", "transport", 1, 91.2},
				"scenario 10-rsplib-echo": {"scenario", "10-rsplib-echo", 77, 3.5},
			},
		},
		{in: "test transport 1\n", wantErr: true},
		{in: "test transport x 1\n", wantErr: true},
	} {
		got, err := parseStatus([]byte(tc.in))
		if (err != nil) != tc.wantErr {
			t.Errorf("parseStatus(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("parseStatus(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestCountJSON pins the two decoder output shapes accepted.
func TestCountJSON(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		err  bool
	}{
		{`[{"a":1},{"a":2}]`, 2, false},
		{"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n", 3, false},
		{"", 0, false},
		{`{"a":`, 0, true},
	} {
		got, err := countJSON([]byte(tc.in))
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("countJSON(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}
