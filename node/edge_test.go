package node

import (
	"slices"
	"strings"
	"testing"
)

// TestCheckControlSide: a registrar listen address that belongs to a
// client-facing interface is refused, naming the field and the interface,
// unless listen-on-client-side is set; wildcard and other addresses pass.
func TestCheckControlSide(t *testing.T) {
	cases := []struct {
		name       string
		asap, enrp string
		clientSide bool
		wantErr    string
	}{
		{"wildcard", ":3863", ":9901", false, ""},
		{"v4 wildcard", "0.0.0.0:3863", "[::]:9901", false, ""},
		{"ASAP on the client side", "127.0.0.1:3863", ":9901", false, "registrar.asap: 127.0.0.1:3863 is an address of the client-facing interface lo"},
		{"ENRP on the client side, v6", ":3863", "[::1]:9901", false, "registrar.enrp: [::1]:9901 is an address of the client-facing interface lo"},
		{"allowed by the flag", "127.0.0.1:3863", "127.0.0.1:9901", true, ""},
		{"another address", "192.0.2.77:3863", ":9901", false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := validConfig()
			cfg.Dataplane.Interfaces = []string{"lo"}
			cfg.Registrar.ASAP, cfg.Registrar.ENRP = c.asap, c.enrp
			cfg.Registrar.ListenOnClientSide = c.clientSide
			err := checkControlSide(cfg)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, c.wantErr)
			}
		})
	}
}

// TestControlPorts: the filtered ports follow the listen addresses.
func TestControlPorts(t *testing.T) {
	cfg := validConfig()
	cfg.Registrar.ASAP, cfg.Registrar.ENRP, cfg.Metrics = "10.0.0.1:4000", ":9901", "127.0.0.1:9901"
	if got := controlPorts(cfg); !slices.Equal(got, []uint16{4000, 9901}) {
		t.Errorf("control ports %v, want [4000 9901]", got)
	}
	cfg.Metrics = ""
	cfg.Registrar.ASAP = ":3863"
	if got := controlPorts(cfg); !slices.Equal(got, []uint16{3863, 9901}) {
		t.Errorf("control ports %v, want [3863 9901]", got)
	}
}
