package transport

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ishidawataru/sctp"
	"golang.org/x/sys/unix"
)

// On a kernel without SCTP the transport must refuse clearly, and "auto"
// must fall back to TCP; with SCTP it must be chosen.
func TestSCTPSelection(t *testing.T) {
	cfg := quietConfig(t, ASAP)
	probe := SCTPSupported()
	auto, err := New("auto", cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, serr := NewSCTP(cfg)
	if probe == nil {
		if serr != nil {
			t.Fatalf("kernel has SCTP but NewSCTP: %v", serr)
		}
		if auto.Name() != "sctp" {
			t.Fatalf("auto chose %s on a kernel with SCTP", auto.Name())
		}
		return
	}
	if os.Getenv("RSPXDP_VMTEST") == "1" {
		t.Fatalf("RSPXDP_VMTEST=1 but SCTP is unavailable: %v", probe)
	}
	t.Logf("this kernel has no SCTP: %v", serr)
	if !errors.Is(serr, ErrSCTPUnsupported) {
		t.Fatalf("NewSCTP error %v does not wrap ErrSCTPUnsupported", serr)
	}
	for _, want := range []string{"no SCTP", "modprobe sctp", "--transport tcp", "ASAP"} {
		if !strings.Contains(serr.Error(), want) {
			t.Errorf("error %q does not say %q", serr, want)
		}
	}
	if _, err := New("sctp", cfg); !errors.Is(err, ErrSCTPUnsupported) {
		t.Errorf(`New("sctp"): %v, want ErrSCTPUnsupported`, err)
	}
	if auto.Name() != "tcp" {
		t.Fatalf("auto chose %s on a kernel without SCTP, want tcp", auto.Name())
	}
	// The zero SCTP value (constructed without the probe) fails at socket
	// time with the same typed error rather than something obscure.
	s := &SCTP{cfg: cfg}
	s.cfg, _ = cfg.withDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.Listen(ctx, "127.0.0.1:0"); !errors.Is(err, ErrSCTPUnsupported) {
		t.Errorf("Listen: %v, want ErrSCTPUnsupported", err)
	}
	if _, err := s.Dial(ctx, "127.0.0.1:3863"); !errors.Is(err, ErrSCTPUnsupported) {
		t.Errorf("Dial: %v, want ErrSCTPUnsupported", err)
	}
}

// Real SCTP specifics the shared suite cannot express: the PPID actually
// sent on the wire for each protocol, and multi-homed address syntax.
func TestSCTPSendsProtocolPPID(t *testing.T) {
	requireSCTP(t)
	for _, p := range []Protocol{ASAP, ENRP} {
		t.Run(p.String(), func(t *testing.T) {
			cfg := quietConfig(t, p)
			tr, err := NewSCTP(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ln, err := tr.Listen(ctx, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan uint32, 1)
			go func() {
				c, err := ln.Accept(ctx)
				if err != nil {
					got <- 0
					return
				}
				defer c.Close()
				sc := c.(*sctpConn)
				fd := -1
				sc.rc.Control(func(f uintptr) { fd = int(f) })
				lib := sctp.NewSCTPConn(fd, nil) // not closed: c owns fd
				// Read with the library's own receive path, which reports
				// the PPID independently of ours.
				buf := make([]byte, 100)
				var info *sctp.SndRcvInfo
				for i := 0; i < 500; i++ { // the socket is non-blocking
					_, info, err = lib.SCTPRead(buf)
					if !errors.Is(err, unix.EAGAIN) {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				if err != nil || info == nil {
					t.Errorf("SCTPRead: %v (info %v)", err, info)
					got <- 0
					return
				}
				got <- info.PPID
			}()
			c, err := tr.Dial(ctx, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.WriteMessage(ctx, msg(1, 16, 1)); err != nil {
				t.Fatal(err)
			}
			if ppid := <-got; ppid != p.PPID() {
				t.Fatalf("PPID on the wire %d, want %d", ppid, p.PPID())
			}
		})
	}
}

func TestSCTPMultiHomedListen(t *testing.T) {
	requireSCTP(t)
	tr, err := NewSCTP(quietConfig(t, ENRP))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := tr.Listen(ctx, "127.0.0.1/127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	startEchoOn(t, ln)
	port := ln.Addr().String()[strings.LastIndex(ln.Addr().String(), ":"):]
	for _, host := range []string{"127.0.0.1", "127.0.0.2"} {
		if err := roundTrips(ctx, tr, host+port, 3, 0); err != nil {
			t.Errorf("via %s: %v", host, err)
		}
	}
}
