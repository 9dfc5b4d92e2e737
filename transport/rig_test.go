package transport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ishidawataru/sctp"
	"golang.org/x/sys/unix"
)

// A rig is one transport under the shared behaviour suite, plus a way to
// reach its listener as a misbehaving peer that writes raw bytes.
type rig struct {
	name string
	// stream: framing is ours (TCP, TLS); otherwise the kernel keeps
	// message boundaries (SCTP and its SEQPACKET stand-in).
	stream bool
	// hasPPID: the raw peer can choose the SCTP PPID.
	hasPPID bool
	// require skips or fails the test when the rig cannot run here.
	require func(t *testing.T)
	// transport returns the transport under test for cfg.
	transport func(t testing.TB, cfg Config) Transport
	// rawDial connects a raw peer to addr.
	rawDial func(t *testing.T, addr string) rawPeer
	// addr is the address to listen on.
	addr func(t *testing.T) string
}

// rawPeer sends bytes exactly as given: a stream write, or one message.
type rawPeer interface {
	send(b []byte, ppid uint32) error
	// waitClosed returns nil once the other side has closed the
	// connection, or an error after timeout.
	waitClosed(timeout time.Duration) error
	close()
}

// requireSCTP gates the real-SCTP tests: run where the kernel has SCTP,
// fail inside the test VM (RSPXDP_VMTEST=1) if it does not, skip elsewhere.
func requireSCTP(t *testing.T) {
	t.Helper()
	if err := SCTPSupported(); err != nil {
		if os.Getenv("RSPXDP_VMTEST") == "1" {
			t.Fatalf("RSPXDP_VMTEST=1 but SCTP is unavailable: %v", err)
		}
		t.Skip("kernel has no SCTP; these run inside the test VM (make vmtest)")
	}
}

func rigs() []rig {
	return []rig{
		{
			name: "tcp", stream: true,
			require: func(*testing.T) {},
			transport: func(t testing.TB, cfg Config) Transport {
				tr, err := NewTCP(cfg)
				if err != nil {
					t.Fatal(err)
				}
				return tr
			},
			rawDial: dialRawTCP,
			addr:    func(*testing.T) string { return "127.0.0.1:0" },
		},
		{
			name: "tls", stream: true,
			require: func(*testing.T) {},
			transport: func(t testing.TB, cfg Config) Transport {
				return newTLSPair(t, cfg).server
			},
			rawDial: func(t *testing.T, addr string) rawPeer {
				pki := testPKI(t)
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, pki.clientConfig("pe1.test"))
				if err != nil {
					t.Fatalf("raw TLS dial: %v", err)
				}
				return &streamPeer{c: c}
			},
			addr: func(*testing.T) string { return "127.0.0.1:0" },
		},
		{
			name:    "sctp",
			hasPPID: true,
			require: requireSCTP,
			transport: func(t testing.TB, cfg Config) Transport {
				tr, err := NewSCTP(cfg)
				if err != nil {
					t.Fatal(err)
				}
				return tr
			},
			rawDial: dialRawSCTP,
			addr:    func(*testing.T) string { return "127.0.0.1:0" },
		},
		{
			// The SCTP transport's message path over AF_UNIX SOCK_SEQPACKET,
			// which keeps message boundaries like SCTP but has no PPID:
			// it runs everywhere, the real SCTP rig only where SCTP exists.
			name:      "seqpacket",
			require:   func(*testing.T) {},
			transport: func(t testing.TB, cfg Config) Transport { return newSeqpacket(t, cfg) },
			rawDial:   dialRawSeqpacket,
			addr: func(t *testing.T) string {
				return fmt.Sprintf("@rspxdp-test-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
			},
		},
	}
}

// forEachRig runs f once per rig as a subtest.
func forEachRig(t *testing.T, f func(t *testing.T, r rig)) {
	for _, r := range rigs() {
		t.Run(r.name, func(t *testing.T) {
			r.require(t)
			f(t, r)
		})
	}
}

// quietConfig is a Config whose logger writes into the test log.
func quietConfig(t *testing.T, p Protocol) Config {
	return Config{Protocol: p, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// msg builds a message of total size n: type, flags, length, then a body
// that encodes seq so corruption and reordering show.
func msg(typ byte, n int, seq uint32) []byte {
	b := make([]byte, n)
	b[0] = typ
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
	for i := HeaderLen; i < n; i++ {
		b[i] = byte(seq + uint32(i))
	}
	if n >= 8 {
		binary.BigEndian.PutUint32(b[4:8], seq)
	}
	return b
}

// checkMsg verifies a message built by msg and returns its seq.
func checkMsg(b []byte) (uint32, error) {
	if len(b) < HeaderLen || int(binary.BigEndian.Uint16(b[2:4])) != len(b) {
		return 0, fmt.Errorf("bad header % x", b[:min(len(b), 4)])
	}
	if len(b) < 8 {
		return 0, nil
	}
	seq := binary.BigEndian.Uint32(b[4:8])
	want := msg(b[0], len(b), seq)
	if !bytes.Equal(b, want) {
		return seq, fmt.Errorf("message seq %d of %d bytes corrupted", seq, len(b))
	}
	return seq, nil
}

// echoServer accepts until stopped, echoes every message, and reports how
// each connection ended.
type echoServer struct {
	ln    Listener
	ended chan error // one per connection: nil for a clean EOF
	wg    sync.WaitGroup
}

func startEcho(t *testing.T, tr Transport, addr string) *echoServer {
	t.Helper()
	ln, err := tr.Listen(context.Background(), addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return startEchoOn(t, ln)
}

// startEchoOn serves ln as an echo server until the test ends.
func startEchoOn(t *testing.T, ln Listener) *echoServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &echoServer{ln: ln, ended: make(chan error, 100)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				for {
					m, err := c.ReadMessage(ctx)
					if err != nil {
						if errors.Is(err, io.EOF) {
							err = nil
						}
						s.ended <- err
						return
					}
					if err := c.WriteMessage(ctx, m); err != nil {
						s.ended <- fmt.Errorf("echo: %w", err)
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		s.wg.Wait()
	})
	return s
}

// roundTrips runs n echo round trips on a fresh connection.
func roundTrips(ctx context.Context, tr Transport, addr string, n int, seq0 uint32) error {
	c, err := tr.Dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	for i := 0; i < n; i++ {
		want := msg(0x0b, 8+int(seq0+uint32(i))%200, seq0+uint32(i))
		if err := c.WriteMessage(ctx, want); err != nil {
			return err
		}
		got, err := c.ReadMessage(ctx)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("round trip %d: got % x, want % x", i, got, want)
		}
	}
	return nil
}

// --- raw peers ---

type streamPeer struct{ c net.Conn }

func dialRawTCP(t *testing.T, addr string) rawPeer {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("raw dial: %v", err)
	}
	return &streamPeer{c: c}
}

func (p *streamPeer) send(b []byte, _ uint32) error { _, err := p.c.Write(b); return err }
func (p *streamPeer) close()                        { p.c.Close() }
func (p *streamPeer) waitClosed(timeout time.Duration) error {
	p.c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 100)
	for {
		_, err := p.c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("connection still open after %v", timeout)
		}
		return nil // EOF, reset: closed
	}
}

type fdPeer struct {
	fd   int
	sctp *sctp.SCTPConn
}

func (p *fdPeer) send(b []byte, ppid uint32) error {
	if p.sctp != nil {
		_, err := p.sctp.SCTPWrite(b, &sctp.SndRcvInfo{PPID: ppid})
		return err
	}
	return unix.Send(p.fd, b, 0)
}

func (p *fdPeer) close() { unix.Close(p.fd) }

func (p *fdPeer) waitClosed(timeout time.Duration) error {
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(p.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	buf := make([]byte, 70000)
	for {
		n, err := unix.Read(p.fd, buf)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return fmt.Errorf("connection still open after %v", timeout)
		case err != nil || n == 0:
			return nil
		}
	}
}

func dialRawSCTP(t *testing.T, addr string) rawPeer {
	ra, err := sctp.ResolveSCTPAddr("sctp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sctp.DialSCTP("sctp", nil, ra)
	if err != nil {
		t.Fatalf("raw SCTP dial: %v", err)
	}
	fd := -1
	rc, _ := c.SyscallConn()
	rc.Control(func(f uintptr) { fd = int(f) })
	return &fdPeer{fd: fd, sctp: c}
}

// --- the SEQPACKET stand-in for SCTP ---

type seqpacket struct{ s *SCTP }

func newSeqpacket(t testing.TB, cfg Config) *seqpacket {
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return &seqpacket{s: &SCTP{cfg: cfg}}
}

func (q *seqpacket) Name() string { return "seqpacket" }

func (q *seqpacket) Listen(_ context.Context, addr string) (Listener, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: addr}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.Listen(fd, 64); err != nil {
		unix.Close(fd)
		return nil, err
	}
	ln, err := newSCTPListener(q.s, fd, nil, false)
	if err != nil {
		return nil, err
	}
	ln.addr = &net.UnixAddr{Name: addr, Net: "unixpacket"}
	return ln, nil
}

func (q *seqpacket) Dial(_ context.Context, addr string) (Conn, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: addr}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return newSCTPConn(q.s, fd, false)
}

func dialRawSeqpacket(t *testing.T, addr string) rawPeer {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: addr}); err != nil {
		t.Fatal(err)
	}
	return &fdPeer{fd: fd}
}

// --- test PKI ---

type pki struct {
	pool   *x509.CertPool
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

var (
	pkiOnce sync.Once
	pkiVal  *pki
)

// testPKI returns a CA made for this test run (once per process: key
// generation is the slow part).
func testPKI(t testing.TB) *pki {
	pkiOnce.Do(func() { pkiVal = newPKI() })
	return pkiVal
}

// newPKI makes a fresh CA.
func newPKI() *pki {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err) // crypto/rand failing is not a test outcome
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rspxdp test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &pki{pool: pool, caCert: cert, caKey: key}
}

var serial = struct {
	sync.Mutex
	n int64
}{n: 1}

func (p *pki) leaf(name string, server bool) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial.Lock()
	serial.n++
	sn := serial.n
	serial.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(sn), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{name}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func (p *pki) serverConfig(name string) *tls.Config {
	return &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.cachedLeaf(name, true), nil },
		ClientCAs:      p.pool,
		ClientAuth:     tls.RequireAndVerifyClientCert,
	}
}

func (p *pki) clientConfig(name string) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{*p.cachedLeaf(name, false)},
		RootCAs:      p.pool,
		MinVersion:   tls.VersionTLS13,
	}
}

var leafCache sync.Map

func (p *pki) cachedLeaf(name string, server bool) *tls.Certificate {
	k := fmt.Sprint(p, name, server)
	if c, ok := leafCache.Load(k); ok {
		return c.(*tls.Certificate)
	}
	c, err := p.leaf(name, server)
	if err != nil {
		panic(err) // crypto/rand failing is not a test outcome
	}
	v, _ := leafCache.LoadOrStore(k, &c)
	return v.(*tls.Certificate)
}

// tlsPair is a server-side and a client-side TLS transport sharing a CA.
// The server transport dials with the client's identity too, so one
// Transport value works for both ends in the shared suite.
type tlsPair struct{ server *dualTLS }

// dualTLS listens with the server config and dials with the client config.
type dualTLS struct{ srv, cli *TCP }

func (d *dualTLS) Name() string { return "tls" }
func (d *dualTLS) Listen(ctx context.Context, addr string) (Listener, error) {
	return d.srv.Listen(ctx, addr)
}
func (d *dualTLS) Dial(ctx context.Context, addr string) (Conn, error) { return d.cli.Dial(ctx, addr) }

func newTLSPair(t testing.TB, cfg Config) tlsPair {
	p := testPKI(t)
	srv, err := NewTLS(cfg, p.serverConfig("registrar.test"))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := NewTLS(cfg, p.clientConfig("pe1.test"))
	if err != nil {
		t.Fatal(err)
	}
	return tlsPair{server: &dualTLS{srv: srv, cli: cli}}
}

// dialEcho starts an echo server on r and dials it; the context (20 s) and
// the connection end with the test.
func dialEcho(t *testing.T, r rig) (context.Context, Conn) {
	t.Helper()
	tr := r.transport(t, quietConfig(t, ASAP))
	s := startEcho(t, tr, r.addr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	c, err := tr.Dial(ctx, s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return ctx, c
}
