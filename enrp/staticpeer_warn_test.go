package enrp

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/internal/testenv"
)

// TestStaticPeerNeverAnsweringWarnsOnce: a configured peer nobody listens
// on is reported at WARN once (not at debug on every dial), and
// StaticPeerStates shows it down; one that answers shows up.
func TestStaticPeerNeverAnsweringWarnsOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now
	live := startNode(t, itConfig(2))
	logs := &testenv.LogBuffer{}
	cfg := itConfig(1)
	cfg.Transport = "tcp"
	cfg.Logger = logs.Logger()
	cfg.Peers = []string{dead, live.srv.ENRPAddr().String()}
	if live.srv.cfg.Transport != "tcp" {
		t.Skip("the live peer speaks " + live.srv.cfg.Transport)
	}
	n := startNode(t, cfg)
	deadline := time.Now().Add(10 * cfg.PeerMaxTimeLastHeard)
	for !strings.Contains(logs.String(), "static peer does not answer") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning about %s:\n%s", dead, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(3 * cfg.PeerMaxTimeLastHeard) // many more failed dials
	if k := strings.Count(logs.String(), "static peer does not answer"); k != 1 {
		t.Fatalf("warned %d times:\n%s", k, logs.String())
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"static peer does not answer; still trying\" registrar=0x00000001 addr="+dead) {
		t.Fatalf("warning not at WARN or without the address:\n%s", logs.String())
	}
	st := n.srv.StaticPeerStates()
	if st[dead] || !st[live.srv.ENRPAddr().String()] || len(st) != 2 {
		t.Fatalf("StaticPeerStates = %v; want %s down, %s up", st, dead, live.srv.ENRPAddr())
	}
}
