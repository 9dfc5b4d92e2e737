package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rspxdp/rspxdp/internal/capture"
	"github.com/rspxdp/rspxdp/wire"
)

const decodeUsage = `Usage: rspxdp decode [--json] FILE.pcap

Print every ASAP and ENRP message in a packet capture (pcap or pcapng):
SCTP DATA chunks with PPID 11/12, UDP to or from ports 3863/9901, and TCP
streams on those ports reassembled and framed by the message length. One
line per message: the frame number, seconds since the first message, the
time, source > destination, transport, protocol, type, flags and
parameters (rspxdp's private 0xbf41 shown as ASAPEndpoint=TRANSPORT). A
message that does not decode is printed with its error and the tool
carries on; the exit status is then 1, as it is for a capture cut short
(the messages before the cut are printed, then a warning).

Examples:
  rspxdp decode capture.pcap
  rspxdp decode --json capture.pcap | jq 'select(.type == "Registration")'
  tcpdump -i any -w - 'sctp or port 3863 or port 9901' > x.pcap; rspxdp decode x.pcap`

func runDecode(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "decode", decodeUsage)
	asJSON := fs.Bool("json", false, "print one JSON object per message")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want exactly one capture file, got %d arguments", fs.NArg())
	}
	path := fs.Arg(0)
	var in io.Reader = env.stdin
	if path == "-" { // stdin, e.g. tcpdump -w - | rspxdp decode -
		path = "stdin"
		if in == nil {
			in = os.Stdin
		}
	} else {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	r, err := capture.NewReader(in)
	if err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	w := bufio.NewWriter(env.stdout)
	defer w.Flush()
	var dec wire.Decoder
	var m wire.Message
	total, failed, lastFrame := 0, 0, 0
	var start time.Time
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		cm, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			w.Flush()
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("warning: %s is truncated after frame %d (%v): the messages before the cut were printed", path, lastFrame, err)
			}
			return fmt.Errorf("decode %s: %w", path, err)
		}
		if total == 0 {
			start = cm.Time
		}
		lastFrame = cm.Frame
		total++
		derr := cm.Err
		if derr == nil {
			derr = dec.Decode(cm.Protocol, cm.Payload, &m)
		}
		if derr != nil {
			failed++
		}
		if *asJSON {
			err = writeJSON(w, &cm, &m, derr)
		} else {
			err = writeText(w, &cm, &m, derr, start)
		}
		if err != nil {
			return fmt.Errorf("decode: write: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("decode: write: %w", err)
	}
	if failed > 0 {
		return fmt.Errorf("%s: %d of %d messages did not decode", path, failed, total)
	}
	return nil
}

const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// writeText prints one message as a line: the frame number that completed
// it, the seconds since the first message (as tshark's relative time), the
// absolute time, the endpoints and the decoded message.
func writeText(w io.Writer, cm *capture.Message, m *wire.Message, err error, start time.Time) error {
	prefix := fmt.Sprintf("%5d %11.6f %s %s > %s %s", cm.Frame, cm.Time.Sub(start).Seconds(),
		cm.Time.UTC().Format(timeLayout), cm.Src, cm.Dst, cm.Transport)
	if err != nil {
		_, werr := fmt.Fprintf(w, "%s %s ERROR %v (%d bytes: %s)\n", prefix, cm.Protocol, err, len(cm.Payload), shortHex(cm.Payload))
		return werr
	}
	_, werr := fmt.Fprintf(w, "%s %s\n", prefix, m.String())
	return werr
}

func shortHex(b []byte) string {
	if len(b) > 32 {
		return hex.EncodeToString(b[:32]) + "…"
	}
	return hex.EncodeToString(b)
}

// jsonMessage is the --json form of one message; fields a message type
// does not have are left out.
type jsonMessage struct {
	Frame     int              `json:"frame"`
	Time      time.Time        `json:"time"`
	Src       string           `json:"src"`
	Dst       string           `json:"dst"`
	Transport string           `json:"transport"`
	Protocol  string           `json:"protocol"`
	PPID      uint32           `json:"ppid,omitempty"`
	Length    int              `json:"length"`
	Type      string           `json:"type,omitempty"`
	TypeCode  *uint8           `json:"type_code,omitempty"`
	Flags     []string         `json:"flags,omitempty"`
	SenderID  *jsonID          `json:"sender_id,omitempty"`
	Receiver  *jsonID          `json:"receiver_id,omitempty"`
	TargetID  *jsonID          `json:"target_id,omitempty"`
	ServerID  *jsonID          `json:"server_id,omitempty"`
	Action    *uint16          `json:"update_action,omitempty"`
	Params    []map[string]any `json:"params,omitempty"`
	Error     string           `json:"error,omitempty"`
	Raw       string           `json:"raw,omitempty"`
}

func writeJSON(w io.Writer, cm *capture.Message, m *wire.Message, err error) error {
	j := jsonMessage{
		Frame: cm.Frame, Time: cm.Time.UTC(), Src: cm.Src.String(), Dst: cm.Dst.String(),
		Transport: cm.Transport.String(), Protocol: cm.Protocol.String(), PPID: cm.PPID, Length: len(cm.Payload),
	}
	if err != nil {
		j.Error = err.Error()
		j.Raw = hex.EncodeToString(cm.Payload)
	} else {
		code := uint8(m.Type)
		j.Type, j.TypeCode = m.TypeName(), &code
		j.Flags = m.Protocol.FlagNames(m.Type, m.Flags)
		if m.Protocol == wire.ENRP {
			j.SenderID, j.Receiver = idPtr(m.SenderID), idPtr(m.ReceiverID)
			switch m.Type {
			case wire.ENRPInitTakeover, wire.ENRPInitTakeoverAck, wire.ENRPTakeoverServer:
				j.TargetID = idPtr(m.TargetID)
			case wire.ENRPHandleUpdate:
				a := uint16(m.Action)
				j.Action = &a
			}
		} else if m.Type == wire.ASAPEndpointKeepAlive || m.Type == wire.ASAPServerAnnounce {
			j.ServerID = idPtr(m.ServerID)
		}
		for i := range m.Params {
			j.Params = append(j.Params, jsonParam(&m.Params[i]))
		}
	}
	b, merr := json.Marshal(j)
	if merr != nil {
		return merr
	}
	_, werr := w.Write(append(b, '\n'))
	return werr
}

func jsonTransport(t wire.Transport) map[string]any {
	addrs := make([]string, len(t.Addrs))
	for i, a := range t.Addrs {
		addrs[i] = a.String()
	}
	o := map[string]any{"kind": t.Kind.String(), "port": t.Port, "use": uint16(t.Use), "addrs": addrs}
	if t.Kind.Code() == wire.ParamDCCPTransport {
		o["service_code"] = t.ServiceCode
	}
	if len(t.Extra) > 0 {
		o["extra"] = jsonRaw(t.Extra)
	}
	return o
}

func jsonPolicy(p wire.Policy) map[string]any {
	o := map[string]any{"type": p.Type.String(), "type_code": uint32(p.Type)}
	if p.Opaque != nil {
		o["opaque"] = hex.EncodeToString(p.Opaque)
		return o
	}
	names, vals := p.Values()
	for i, n := range names {
		o[n] = vals[i]
	}
	return o
}

func jsonRaw(rs []wire.RawParam) []map[string]any {
	out := make([]map[string]any, len(rs))
	for i, r := range rs {
		out[i] = map[string]any{"type": r.Type.String(), "type_code": uint16(r.Type), "value": hex.EncodeToString(r.Value)}
		if t, ok := r.ASAPEndpoint(); ok {
			out[i]["transport"] = jsonTransport(t.Transport)
		}
	}
	return out
}

func jsonParam(p *wire.Param) map[string]any {
	o := map[string]any{"type": p.Type.String()}
	switch c := p.Type.Code(); {
	case c == wire.ParamIPv4Address || c == wire.ParamIPv6Address:
		o["addr"] = p.Addr.String()
	case p.Type.IsTransport():
		t := p.Transport
		t.Kind = p.Type
		o["transport"] = jsonTransport(t)
	case c == wire.ParamPolicy:
		o["policy"] = jsonPolicy(p.Policy)
	case c == wire.ParamPoolHandle:
		o["pool_handle"] = string(p.PoolHandle)
		o["pool_handle_hex"] = hex.EncodeToString(p.PoolHandle)
	case c == wire.ParamPoolElement:
		pe := p.PoolElement
		e := map[string]any{"id": jsonID(pe.ID), "home_registrar": jsonID(pe.HomeRegistrar), "lifetime_ms": pe.Lifetime}
		if pe.UserTransport.Kind != 0 {
			e["user_transport"] = jsonTransport(pe.UserTransport)
		}
		if pe.Policy.Type != 0 || pe.Policy.Opaque != nil {
			e["policy"] = jsonPolicy(pe.Policy)
		}
		if pe.ASAPTransport.Kind != 0 {
			e["asap_transport"] = jsonTransport(pe.ASAPTransport)
		}
		if len(pe.Extra) > 0 {
			e["extra"] = jsonRaw(pe.Extra)
		}
		o["pool_element"] = e
	case c == wire.ParamServerInformation:
		s := map[string]any{"id": jsonID(p.Server.ID)}
		if p.Server.Transport.Kind != 0 {
			s["transport"] = jsonTransport(p.Server.Transport)
		}
		o["server"] = s
	case c == wire.ParamOperationError:
		causes := make([]map[string]any, len(p.Causes))
		for i, cs := range p.Causes {
			causes[i] = map[string]any{"code": uint16(cs.Code), "name": cs.Code.String(), "info": hex.EncodeToString(cs.Info)}
		}
		o["causes"] = causes
	case c == wire.ParamCookie:
		o["cookie"] = hex.EncodeToString(p.Cookie)
	case c == wire.ParamPEIdentifier:
		o["pe_id"] = jsonID(p.PEID)
	case c == wire.ParamPEChecksum:
		o["checksum"] = p.Checksum
	case c == wire.ParamHandleResolution.Code():
		o["items"] = p.Items
	default:
		o["type_code"] = uint16(p.Type)
		o["action"] = p.Type.Action().String()
		o["value"] = hex.EncodeToString(p.Raw)
	}
	return o
}
