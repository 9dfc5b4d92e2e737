package wire_test

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/testenv"
	"github.com/rspxdp/rspxdp/wire"
	"github.com/rspxdp/rspxdp/wire/wiretest"
)

// TestTsharkReadsOurEncoding has Wireshark's own ASAP and ENRP dissectors
// judge the encoder: a pcap of every sample message as SCTP DATA chunks
// must dissect without malformed packets or expert errors, and tshark must
// read back the pool handle, PE identifier and policy type written.
func TestTsharkReadsOurEncoding(t *testing.T) {
	tshark := testenv.RequireCommand(t, "tshark", "tshark")
	msgs := wiretest.Messages()
	path := filepath.Join(t.TempDir(), "samples.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := wiretest.WriteSCTPPcap(f, msgs, time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(tshark, append([]string{"-n", "-r", path}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user profile
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("tshark %v: %v\n%s", args, err, out)
		}
		return string(out)
	}

	const badFilter = "_ws.malformed || _ws.expert.severity >= 0x00800000"
	if bad := run("-Y", badFilter); strings.TrimSpace(bad) != "" {
		t.Errorf("tshark reports malformed packets or errors:\n%s", bad)
	}
	// Control: the filter does catch a broken message (a parameter whose
	// length runs past the message), so silence above means something.
	good := path
	path = filepath.Join(t.TempDir(), "broken.pcap")
	broken := wiretest.Encode(msgs[:1])[0]
	broken[4+2], broken[4+3] = 0x01, 0x00 // pool handle length 256: past the message
	f, err = os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := wiretest.WriteSCTPPcapPayloads(f, []wiretest.Payload{{Protocol: wire.ASAP, Bytes: broken}}, time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if bad := run("-Y", badFilter); strings.TrimSpace(bad) == "" {
		t.Errorf("control: tshark did not flag a broken message; the malformed check proves nothing")
	}
	path = good

	// One line per frame: which protocol tshark saw and its type.
	lines := strings.Split(strings.TrimSpace(run("-T", "fields", "-E", "separator=|",
		"-e", "frame.number", "-e", "asap.message_type", "-e", "enrp.message_type",
		"-e", "asap.pool_handle_pool_handle", "-e", "enrp.pool_handle_pool_handle",
		"-e", "asap.pool_element_pe_identifier", "-e", "enrp.pool_element_pe_identifier",
		"-e", "asap.pe_identifier",
		"-e", "asap.pool_member_selection_policy_type", "-e", "enrp.pool_member_selection_policy_type",
		"-e", "enrp.sender_servers_id")), "\n")
	if len(lines) != len(msgs) {
		t.Fatalf("tshark shows %d frames, wrote %d", len(lines), len(msgs))
	}
	handleHex := hex.EncodeToString([]byte(wiretest.PoolHandle))
	for i, line := range lines {
		m := msgs[i]
		fs := strings.Split(line, "|")
		if len(fs) != 11 {
			t.Fatalf("frame %d: %q", i+1, line)
		}
		typeField := fs[1]
		if m.Protocol == wire.ENRP {
			typeField = fs[2]
		}
		if first(typeField) != fmt.Sprint(uint8(m.Type)) {
			t.Errorf("frame %d: tshark type %q, wrote %s %s", i+1, typeField, m.Protocol, m.TypeName())
		}
		if m.Param(wire.ParamPoolHandle) != nil {
			got := fs[3] + fs[4]
			if !strings.Contains(strings.ReplaceAll(got, ":", ""), handleHex) {
				t.Errorf("frame %d %s: pool handle %q, want %x", i+1, m.TypeName(), got, wiretest.PoolHandle)
			}
		}
		if pe := m.PoolElement(); pe != nil {
			if id := first(fs[5] + fs[6]); !hexEqual(id, uint64(pe.ID)) {
				t.Errorf("frame %d %s: PE id %q, want %#x", i+1, m.TypeName(), id, pe.ID)
			}
			if pol := first(fs[8] + fs[9]); pe.Policy.Type != 0 && !policyListed(fs[8]+","+fs[9], pe.Policy.Type) {
				t.Errorf("frame %d %s: policy %q, want %#x", i+1, m.TypeName(), pol, uint32(pe.Policy.Type))
			}
		}
		if id, ok := m.PEID(); ok && m.Protocol == wire.ASAP {
			if !hexEqual(first(fs[7]), uint64(id)) {
				t.Errorf("frame %d %s: PE identifier %q, want %#x", i+1, m.TypeName(), fs[7], id)
			}
		}
		if m.Protocol == wire.ENRP && !hexEqual(fs[10], uint64(m.SenderID)) {
			t.Errorf("frame %d %s: sender %q, want %#x", i+1, m.TypeName(), fs[10], m.SenderID)
		}
	}
}

func first(s string) string { return strings.Split(s, ",")[0] }

func hexEqual(s string, v uint64) bool {
	var got uint64
	if _, err := fmt.Sscanf(strings.TrimSpace(s), "0x%x", &got); err != nil {
		if _, err := fmt.Sscanf(strings.TrimSpace(s), "%d", &got); err != nil {
			return false
		}
	}
	return got == v
}

func policyListed(list string, p wire.PolicyType) bool {
	for _, s := range strings.Split(list, ",") {
		if s != "" && hexEqual(s, uint64(p)) {
			return true
		}
	}
	return false
}
