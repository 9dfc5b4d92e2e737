package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/rspxdp/rspxdp/asap"
	"github.com/rspxdp/rspxdp/loader"
	"github.com/rspxdp/rspxdp/node"
	"github.com/rspxdp/rspxdp/transport"
)

const peUsage = `Usage: rspxdp pe --pool HANDLE --registrar ADDR[,ADDR] --listen ADDR --service SERVICE [flags]

Runs a pool element: serves SERVICE on --listen and registers it under the
pool handle with the registrars (re-registering, answering keep-alives,
following a registrar takeover). On SIGINT or SIGTERM it drains:
deregisters first, so new pool users go to other PEs, then serves the open
sessions until they end or --drain-timeout passes.

Services (those of rsplib's demo tools). With --transport sctp the PE
serves them as rsplib's PEs do, one SCTP association per session with data
and ASAP Cookies multiplexed by PPID, so rspterminal reaches it; over TCP
in rspxdp's session framing (see 'go doc github.com/rspxdp/rspxdp/asap'):
  echo     answers every message with the same bytes; before each answer it
           sends an ASAP Cookie "pe=<id> bytes=<n>", and logs the Cookie
           Echo a pool user presents after failing over to it
  discard  reads and drops everything
  daytime  sends the date and time, then closes
  chargen  sends the RFC 864 character pattern until the user closes

Policies: ` + "%s" + `
(short: rr, wrr, rand, wrand, prio, lu, lud, plu, rlu), with values after a
colon in wire order, loads as percentages: wrr:3, lu:25%%, lud:10%%,1%%.

Examples:
  # An echo PE in pool "echo", weight 3, with two registrars.
  rspxdp pe --pool echo --registrar 127.0.0.1:3863,127.0.0.1:3864 \
      --listen 127.0.0.1:7000 --service echo --policy wrr:3

  # The same with rsplib's rspregistrar, which speaks ASAP over SCTP only.
  rspxdp pe --pool echo --registrar 10.0.0.1:3863 --transport sctp \
      --listen 10.0.0.2:7000 --service echo

  # A PE behind an rspxdp node's VIP 10.200.1.1:7 (the VIP on lo): plain
  # TCP for unaware clients, IPIP from the node decapsulated in XDP on eth0.
  rspxdp pe --pool web --registrar 192.0.2.1:3863 --listen 0.0.0.0:7 \
      --service echo --unaware --decap eth0

  # A daytime PE found by registrars' server announces, least used at 20%%.
  rspxdp pe --pool daytime --announces :3863 --listen :7001 --service daytime --policy lu:20%%`

func runPE(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "pe", fmt.Sprintf(peUsage, strings.Join(asap.PolicyNames(), ", ")))
	pool := fs.String("pool", "", "pool handle to register under (required)")
	var regs listFlag
	fs.Var(&regs, "registrar", "registrar ASAP address HOST:PORT (repeatable or comma-separated)")
	announces := fs.String("announces", "", "also learn registrars from ASAP Server Announces on this UDP address, e.g. :3863")
	listen := fs.String("listen", "", "address to serve on, HOST:PORT (required)")
	asapListen := fs.String("asap-listen", "", "where registrars reach this PE's ASAP endpoint after a takeover (default: --listen's host, any port)")
	service := fs.String("service", "echo", "service: echo, discard, daytime or chargen")
	pol := fs.String("policy", "RoundRobin", "pool policy NAME[:VALUES]")
	interval := fs.Duration("reregister-interval", asap.DefaultReregistrationInterval, "re-registration interval (lifetime is 3x)")
	regTimeout := fs.Duration("register-timeout", 10*time.Second, "give up when no registrar accepted the registration within this time")
	drain := fs.Duration("drain-timeout", 30*time.Second, "on SIGTERM, serve open sessions at most this long after deregistering")
	unaware := fs.Bool("unaware", false, "serve RSerPool-unaware clients (e.g. behind rspxdp node's VIP): plain bytes, no session layer")
	decap := fs.String("decap", "", "attach rspxdp's decapsulation XDP program to this interface, for flows an rspxdp node encapsulated (IPIP) to this PE; the VIP must be on lo")
	peID := fs.String("id", "", "pool element identifier (decimal or 0x hex, non-zero; default: random)")
	tf := addTLSFlags(fs)
	asapTr := fs.String("transport", "tcp", "ASAP transport to registrars: tcp, sctp (needs kernel SCTP; what rsplib's rspregistrar speaks) or auto")
	metrics := fs.String("metrics", "", "Prometheus /metrics, /healthz and /readyz listen address, e.g. :9466 (empty: off)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if *pool == "" {
		return usagef("--pool is required")
	}
	if err := node.CheckHandle(*pool); err != nil {
		return usagef("--pool: %v", err)
	}
	if *listen == "" {
		return usagef("--listen is required")
	}
	if len(regs) == 0 && *announces == "" {
		return usagef("give --registrar or --announces")
	}
	if err := checkHostPorts("--registrar", regs); err != nil {
		return err
	}
	if err := checkHostPorts("--listen", []string{*listen}); err != nil {
		return err
	}
	serve, ok := services[*service]
	if !ok {
		return usagef("--service %q: want echo, discard, daytime or chargen", *service)
	}
	settings, err := asap.ParsePolicy(*pol)
	if err != nil {
		return usagef("--policy: %v", err)
	}
	log := env.logger()
	trOpt, trName, err := asapTransportFor(env, *asapTr, tf, log, "pe", true)
	if err != nil {
		return err
	}
	var id uint32
	if *peID != "" {
		v, err := strconv.ParseUint(*peID, 0, 32)
		if err != nil || v == 0 {
			return usagef("--id %q: want a non-zero 32-bit number", *peID)
		}
		id = uint32(v)
	}
	if *decap != "" {
		d, err := attachDecap(*decap, log)
		if err != nil {
			return err
		}
		defer d.Close()
	}
	obs, err := newPEObs(*metrics)
	if err != nil {
		return err
	}
	defer obs.close()
	obs.serve(context.WithoutCancel(ctx), log) // on through the drain, until close
	// Over SCTP the sessions are rsplib's: one association per session,
	// data and ASAP control told apart by PPID. Unaware users come
	// through the XDP data plane over TCP.
	var ln net.Listener
	if trName == "sctp" && !*unaware {
		ln, err = transport.ListenSession(ctx, *listen)
	} else {
		ln, err = net.Listen("tcp", *listen)
	}
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	opts := []asap.Option{asap.WithRegistrars(regs...), asap.WithPolicy(settings),
		asap.WithReregistrationInterval(*interval), asap.WithLogger(log), trOpt}
	if *unaware {
		opts = append(opts, asap.WithUnawareUsers())
	}
	if id != 0 {
		opts = append(opts, asap.WithPEID(id))
	}
	if *announces != "" {
		opts = append(opts, asap.WithAnnounces(*announces))
	}
	if *asapListen != "" {
		if err := checkHostPorts("--asap-listen", []string{*asapListen}); err != nil {
			ln.Close()
			return err
		}
		opts = append(opts, asap.WithASAPListen(*asapListen))
	}
	rctx, rcancel := context.WithTimeout(ctx, *regTimeout)
	pe, err := asap.Register(rctx, *pool, ln, opts...)
	rcancel()
	if err != nil {
		ln.Close()
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted before registration: %w", err)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no registrar accepted the registration within --register-timeout %v: %w", *regTimeout, err)
		}
		return err
	}
	obs.setRegistered(true)
	fmt.Fprintf(env.stdout, "pe 0x%08x: pool %q, %s on %s, policy %s\n", pe.ID(), *pool, *service, ln.Addr(), asap.FormatPolicy(settings))
	go func() {
		for {
			s, err := pe.Accept()
			if err != nil {
				return
			}
			log.Debug("session opened", "remote", s.RemoteAddr().String(), "network", s.RemoteAddr().Network())
			done := obs.session()
			go func() {
				defer done()
				defer s.Close()
				serve(s, pe.ID(), log)
			}()
		}
	}()
	<-ctx.Done()
	obs.setRegistered(false)
	fmt.Fprintf(env.stdout, "pe 0x%08x: draining (at most %v)\n", pe.ID(), *drain)
	dctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	if err := pe.Drain(dctx); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "pe 0x%08x: drained\n", pe.ID())
	return nil
}

// checkHostPorts rejects addresses that are not HOST:PORT.
func checkHostPorts(flagName string, addrs []string) error {
	for _, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return usagef("%s %q: want HOST:PORT", flagName, a)
		}
	}
	return nil
}

var services = map[string]func(s *asap.Session, id uint32, log *slog.Logger){
	"echo":    serveEcho,
	"discard": func(s *asap.Session, _ uint32, _ *slog.Logger) { _, _ = io.Copy(io.Discard, s) },
	"daytime": func(s *asap.Session, _ uint32, _ *slog.Logger) {
		_, _ = fmt.Fprintf(s, "%s\r\n", time.Now().Format(time.RFC1123))
	},
	"chargen": serveChargen,
}

func serveEcho(s *asap.Session, id uint32, log *slog.Logger) {
	buf := make([]byte, 32<<10)
	total := 0
	for {
		n, err := s.Read(buf)
		if c := s.CookieEcho(); c != nil && total == 0 {
			// The user failed over to us: its cookie is the state the
			// previous PE left.
			log.Info("cookie echo from a failed-over pool user", "remote", s.RemoteAddr().String(), "cookie", strings.TrimRight(string(c), "\x00"))
		}
		if n > 0 {
			total += n
			err := s.SendCookie([]byte(fmt.Sprintf("pe=0x%08x bytes=%d", id, total)))
			if err != nil && !errors.Is(err, asap.ErrUnawareSession) {
				return
			}
			if _, err := s.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				log.Debug("session ended", "err", err)
			}
			return
		}
	}
}

// serveChargen writes RFC 864 lines: 72 printable characters, each line
// starting one character further.
func serveChargen(s *asap.Session, _ uint32, _ *slog.Logger) {
	const first, count = 33, 95
	line := make([]byte, 74)
	for i := 0; ; i++ {
		for j := 0; j < 72; j++ {
			line[j] = byte(first + (i+j)%count)
		}
		line[72], line[73] = '\r', '\n'
		if _, err := s.Write(line); err != nil {
			return
		}
	}
}

// attachDecap loads rspxdp's decapsulation program on ifname for every
// address of that interface: the PE side of the node's IPIP forwarding, on
// kernels without an ipip device.
func attachDecap(ifname string, log *slog.Logger) (*loader.Decap, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, usagef("--decap %q: %v", ifname, err)
	}
	as, err := ifc.Addrs()
	if err != nil {
		return nil, fmt.Errorf("--decap %s: addresses: %w", ifname, err)
	}
	var addrs []netip.Addr
	for _, a := range as {
		if p, err := netip.ParsePrefix(a.String()); err == nil && !p.Addr().IsLinkLocalUnicast() {
			addrs = append(addrs, p.Addr())
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("--decap %s: the interface has no address to decapsulate for", ifname)
	}
	d, err := loader.OpenDecap(loader.DecapOptions{Addrs: addrs, Interfaces: []string{ifname}, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("--decap %s: %w", ifname, err)
	}
	log.Info("decapsulating IPIP flows", "interface", ifname, "addresses", addrs)
	return d, nil
}

// asapTransportOption turns --transport and the TLS flags into the ASAP
// transport to registrars (and, for a PE, of its ASAP endpoint). With TLS,
// SIGHUP re-reads the certificate files.
//
// who is the subcommand (pe, pu) for the warning when TLS is off; empty
// for a one-shot client that warns nothing.
func asapTransportOption(env *cliEnv, kind string, tf *tlsFlags, log *slog.Logger, who string) (asap.Option, error) {
	opt, _, err := asapTransportFor(env, kind, tf, log, who, false)
	return opt, err
}

// asapTransportFor is asapTransportOption that also returns the transport's
// name ("tcp" or "sctp", what "auto" chose). fromListener (a PE) makes SCTP
// associations to registrars leave from the PE's ASAP endpoint, as rsplib's
// PEs do: rsplib records the association's source as the PE's ASAP
// endpoint and sends a takeover's keep-alives there.
func asapTransportFor(env *cliEnv, kind string, tf *tlsFlags, log *slog.Logger, who string, fromListener bool) (asap.Option, string, error) {
	switch kind {
	case "tcp", "sctp", "auto":
	default:
		return nil, "", usagef("--transport %q: want tcp, sctp or auto", kind)
	}
	t, rl, err := tf.clientTransport()
	if err != nil {
		return nil, "", err
	}
	if t != nil {
		if kind != "tcp" {
			return nil, "", usagef("TLS runs over TCP: drop --transport %s or the TLS flags", kind)
		}
		env.onReload("TLS material", rl.Reload)
		return asap.WithTransport(t), t.Name(), nil
	}
	if who != "" {
		exposure := "registrars are not authenticated and this pool element's registration can be replaced by anyone"
		if who == "pu" {
			exposure = "registrars are not authenticated: a forged one can send this pool user anywhere"
		}
		warnUnauthenticated(log, who, exposure)
	}
	t, err = transport.New(kind, transport.Config{Protocol: transport.ASAP, Logger: log, DialFromListener: fromListener})
	if err != nil {
		return nil, "", fmt.Errorf("--transport %s: %w", kind, err)
	}
	return asap.WithTransport(t), t.Name(), nil
}
