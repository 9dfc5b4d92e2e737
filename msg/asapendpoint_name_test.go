package msg

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/rspxdp/rspxdp/selector"
	"github.com/rspxdp/rspxdp/wire"
)

// Decoders (rspxdp decode, logs) name rspxdp's private parameter 0xbf41 and
// show the transport in it, not "Param(0xbf41)=<hex>".
func TestASAPEndpointParamIsNamed(t *testing.T) {
	p, ok := asapEndpointParam(netip.MustParseAddrPort("192.0.2.7:3863"), selector.TCP)
	if !ok {
		t.Fatal("no parameter")
	}
	if got := p.Type.String(); got != "ASAPEndpoint" {
		t.Errorf("type %q, want ASAPEndpoint", got)
	}
	s := p.String()
	if !strings.HasPrefix(s, "ASAPEndpoint=") || !strings.Contains(s, "192.0.2.7") || !strings.Contains(s, "3863") {
		t.Errorf("String() = %q, want the name and the nested transport", s)
	}
	tp, ok := p.ASAPEndpoint()
	if !ok || !tp.Type.IsTransport() {
		t.Errorf("ASAPEndpoint() = %v, %v", tp, ok)
	}
	if _, ok := (wire.RawParam{Type: ParamASAPEndpoint, Value: []byte{1, 2}}).ASAPEndpoint(); ok {
		t.Error("garbage decoded as a transport")
	}
}
