package attack

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/security"
	"github.com/rspxdp/rspxdp/security/securitytest"
	"github.com/rspxdp/rspxdp/wire"
)

// policyYAML grants what the TLS attacks need: registrars peer, echo PEs
// register the echo pools (their advertised 10/8 addresses included), and
// every PU, pu/evil among them, only resolves.
const policyYAML = `version: 1
rules:
  - identity: "rspxdp://registrar/*"
    peer: true
    resolve: ["*"]
  - identity: "rspxdp://pe/echo-*"
    register: ["echo*"]
    networks: ["127.0.0.0/8", "10.0.0.0/8"]
  - identity: "rspxdp://pu/*"
    resolve: ["echo*"]
  - identity: "rspxdp://pu/evil"
    resolve: ["echo*"]
`

// pki is a CA and a policy in a test's temporary directory, made with the
// project's own generator (securitytest over security.CA).
type pki struct {
	*securitytest.PKI
	policy string
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	p := &pki{PKI: securitytest.New(t)}
	p.policy = p.WriteFile(t, "policy.yaml", policyYAML)
	return p
}

// registrarArgs are the TLS flags of a registrar named name.
func (p *pki) registrarArgs(t testing.TB, name string) []string {
	t.Helper()
	p.Reloader(t, security.RoleRegistrar, name) // writes registrar-NAME.pem and its key
	return []string{"--tls-ca", filepath.Join(p.Dir, "ca.pem"),
		"--tls-cert", filepath.Join(p.Dir, "registrar-"+name+".pem"),
		"--tls-key", filepath.Join(p.Dir, "registrar-"+name+"-key.pem"), "--policy", p.policy}
}

// client is the TLS configuration of a client holding a certificate for
// role and name, trusting the CA and only registrars.
func (p *pki) client(t testing.TB, role security.Role, name string) *tls.Config {
	t.Helper()
	cfg, err := p.Reloader(t, role, name).ClientConfig(security.ClientOptions{
		ServerName: "127.0.0.1", TrustedServers: []string{"rspxdp://registrar/*"}})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestTLSAttacks(t *testing.T) {
	for _, a := range []attack{
		{name: "conn-memory-tls", tls: true, run: connMemoryTLS},
		{name: "idle-lockout-tls", tls: true, args: lockoutArgs(), run: idleLockoutTLS},
		{name: "authorisation", tls: true, args: fastTimers, run: authorisation},
	} {
		t.Run(a.name, func(t *testing.T) { runAttack(t, a) })
	}
}

// Item 1 with TLS: ENRP connections with a CA-issued certificate that may
// not peer, held and reopened.
func connMemoryTLS(ctx context.Context, t *testing.T, r *registrar) string {
	n, hold, cycles := size(1000, 9000), time.Second, size(2, 5)
	if long() {
		hold = 3 * time.Second
	}
	cfg := r.pki.client(t, security.RolePU, "attacker")
	opened, failed := 0, 0
	for range cycles {
		var cs []*client
		for i := range n {
			c, err := dialTLS(ctx, wire.ENRP, r.enrp, source(i, 400), cfg)
			if err != nil {
				failed++
				continue
			}
			cs = append(cs, c)
		}
		opened += len(cs)
		time.Sleep(hold)
		for _, c := range cs {
			c.close()
		}
	}
	return fmt.Sprintf("%d TLS ENRP connections (pu certificate) held %v and reopened, %d times (%d handshakes completed, %d failed)",
		n, hold, cycles, opened, failed)
}

// Item 3 with TLS: half the attackers open TCP and never send a
// ClientHello, half complete a handshake with a CA-issued pu certificate
// and then say nothing; together they fill --max-connections.
func idleLockoutTLS(ctx context.Context, t *testing.T, r *registrar) string {
	n := size(1500, 10500)
	actx, cancel := context.WithTimeout(ctx, time.Duration(size(6, 20))*time.Second)
	defer cancel()
	cfg := r.pki.client(t, security.RolePU, "idler")
	cpu0, start := r.cpu(), time.Now()
	var handshakes atomic.Int64
	// Sources the plain suite has not used: their ports are not taken by
	// its TIME_WAIT sockets.
	const fresh = 10000 * 400
	dials := holdConnsWith(actx, n, func(ctx context.Context, i int) (*client, error) {
		if i%2 == 0 {
			return dial(ctx, wire.ASAP, r.asap, source(fresh+i, 400)) // no ClientHello ever
		}
		c, err := dialTLS(ctx, wire.ASAP, r.asap, source(fresh+i, 400), cfg)
		if err != nil {
			// The registrar closed it in the handshake (full, this one the
			// idlest): reopen after the pause, as holdConns does after a
			// close, not at its 50 ms dial-error pace.
			select {
			case <-ctx.Done():
			case <-time.After(redialPause):
			}
		}
		if err == nil {
			handshakes.Add(1)
		}
		return c, err
	}, nil)
	<-actx.Done()
	return fmt.Sprintf("%d idle connections (half without ClientHello, half TLS-idle) held and redialled (%d dials, %d TLS handshakes completed), registrar CPU %v in %v",
		n, dials.Load(), handshakes.Load(), r.cpu()-cpu0, time.Since(start).Round(time.Second))
}

// listPE returns PE id of handle as registrar addr resolves it over TLS.
func listPE(ctx context.Context, addr, handle string, id uint32, cfg *tls.Config) (msg.PoolElement, bool) {
	r, err := resolvePEs(ctx, addr, handle, msg.MaxItemsAll, cfg)
	if err != nil {
		return msg.PoolElement{}, false
	}
	for _, pe := range r.PEs {
		if pe.ID == id {
			return pe, true
		}
	}
	return msg.PoolElement{}, false
}

// waitPE polls until PE id is listed (want) or not at addr, within limit,
// and reports whether it got there.
func waitPE(ctx context.Context, addr, handle string, id uint32, cfg *tls.Config, want bool, limit time.Duration) bool {
	for start := time.Now(); time.Since(start) < limit; time.Sleep(100 * time.Millisecond) {
		if _, ok := listPE(ctx, addr, handle, id, cfg); ok == want {
			return true
		}
	}
	return false
}

// ask sends m over a new TLS connection to addr and returns the first
// answer that want accepts.
func ask(ctx context.Context, addr string, cfg *tls.Config, m msg.Message, want func(msg.Message) bool) (msg.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := dialTLS(ctx, wire.ASAP, addr, "127.0.0.1", cfg)
	if err != nil {
		return nil, err
	}
	defer c.close()
	if err := c.send(ctx, m); err != nil {
		return nil, err
	}
	return c.recv(ctx, want)
}

// Item 5: two registrars peering over TLS; pu/evil (resolution only) and
// pe/echo-2 (may register echo-*) go after echo-1's PE, which is homed at
// r and known to r2 by replication.
func authorisation(ctx context.Context, t *testing.T, r *registrar) string {
	const victim = 11
	echo1 := r.pki.client(t, security.RolePE, "echo-1")
	evil := r.pki.client(t, security.RolePU, "evil")
	echo2 := r.pki.client(t, security.RolePE, "echo-2")
	look := r.pki.client(t, security.RolePU, "observer")
	pctx, kill := context.WithCancel(ctx)
	defer kill()
	pe := testPE(victim)
	registerPETLS(pctx, t, r.asap, "echo", pe, echo1)
	r2 := startRegistrar(t, 2, append(append(r.pki.registrarArgs(t, "r2"), "--peer", r.enrp), fastTimers...)...)
	if !waitPE(ctx, r2.asap, "echo", victim, look, true, 10*time.Second) {
		t.Fatal("the non-home registrar never learnt echo-1's PE")
	}
	both := func(want bool, limit time.Duration) bool {
		return waitPE(ctx, r.asap, "echo", victim, look, want, limit) && waitPE(ctx, r2.asap, "echo", victim, look, want, limit)
	}
	// stays reports whether the PE is listed at both registrars at every
	// look for d.
	stays := func(d time.Duration) bool {
		for start := time.Now(); time.Since(start) < d; time.Sleep(250 * time.Millisecond) {
			for _, addr := range []string{r.asap, r2.asap} {
				// A missing PE must be missing twice: one lookup may time
				// out on a loaded machine.
				if _, ok := listPE(ctx, addr, "echo", victim, look); !ok {
					if _, ok := listPE(ctx, addr, "echo", victim, look); !ok {
						return false
					}
				}
			}
		}
		return true
	}

	// (i) evil deregisters the PE at the non-home registrar.
	var dereg string
	m, err := ask(ctx, r2.asap, evil, msg.Deregistration{Handle: "echo", PEID: victim},
		func(m msg.Message) bool { _, ok := m.(msg.DeregistrationResponse); return ok })
	if err != nil {
		dereg = "no answer: " + err.Error()
	} else {
		dr := m.(msg.DeregistrationResponse)
		dereg = fmt.Sprintf("reject=%v cause %v", dr.Reject, dr.Cause)
		if !dr.Reject {
			t.Errorf("pu/evil's deregistration at the non-home registrar accepted")
		}
	}
	if !stays(2 * time.Second) {
		t.Errorf("(i) pu/evil's deregistration at the non-home registrar removed echo-1's PE")
		return "deregistration by pu/evil removed the PE"
	}

	// (ii) evil acks the PE's keep-alive once at each registrar: the
	// keep-alives must stay on the PE's own association, so it lives on.
	for _, addr := range []string{r.asap, r2.asap} {
		c, err := dialTLS(ctx, wire.ASAP, addr, "127.0.0.1", evil)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.send(ctx, msg.EndpointKeepAliveAck{Handle: "echo", PEID: victim})
		c.close()
	}
	const kaPeriods = 6 // of --keepalive-interval 500ms
	if !stays(kaPeriods * 500 * time.Millisecond) {
		t.Errorf("(ii) a keep-alive ack from pu/evil cost the living PE its registration")
	}

	// (iii) pe/echo-2 re-registers echo-1's PE id at the non-home
	// registrar with an address of its own.
	forged := testPE(victim)
	forged.Transport.Addrs = []netip.Addr{netip.MustParseAddr("10.0.0.99")}
	var rereg string
	m, err = ask(ctx, r2.asap, echo2, msg.Registration{Handle: "echo", PE: forged},
		func(m msg.Message) bool { _, ok := m.(msg.RegistrationResponse); return ok })
	if err != nil {
		t.Errorf("(iii) pe/echo-2's registration of echo-1's PE id: no answer: %v", err)
		rereg = "no answer"
	} else {
		rr := m.(msg.RegistrationResponse)
		rereg = fmt.Sprintf("reject=%v cause %v", rr.Reject, rr.Cause)
		if !rr.Reject || rr.Cause != msg.CauseRejectionDueToSecurity {
			t.Errorf("(iii) pe/echo-2's registration of echo-1's PE id at the non-home registrar: %s, want rejected with 0xa", rereg)
		}
	}
	time.Sleep(time.Second) // an accepted one would have replicated by now
	for _, addr := range []string{r.asap, r2.asap} {
		var got msg.PoolElement
		ok := false
		for try := 0; try < 10 && !ok; try++ { // a lookup may time out on a loaded machine
			got, ok = listPE(ctx, addr, "echo", victim, look)
		}
		if !ok || !slices.Equal(got.Transport.Addrs, pe.Transport.Addrs) {
			t.Errorf("(iii) at %s echo-1's PE is %v (listed %v), want transport %v", addr, got.Transport.Addrs, ok, pe.Transport.Addrs)
		}
	}

	// (ii) continued: the PE dies while evil keeps acking at both.
	actx, stop := context.WithCancel(ctx)
	defer stop()
	for _, addr := range []string{r.asap, r2.asap} {
		c, err := dialTLS(ctx, wire.ASAP, addr, "127.0.0.1", evil)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer c.close()
			for actx.Err() == nil {
				if c.send(actx, msg.EndpointKeepAliveAck{Handle: "echo", PEID: victim}) != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	kill()
	died := time.Now()
	gone := both(false, 8*time.Second)
	removed := time.Since(died)
	stop()
	if !gone {
		t.Errorf("(ii) dead PE still listed %v after it died while pu/evil acked its keep-alives", removed.Round(time.Millisecond))
	}
	return fmt.Sprintf("pu/evil dereg at non-home: %s, PE kept; one forged ack: PE kept %d keep-alive periods; pe/echo-2 re-registration at non-home: %s, transport kept; dead PE gone at both %v after death despite forged acks",
		dereg, kaPeriods, rereg, removed.Round(time.Millisecond))
}
