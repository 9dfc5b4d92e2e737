package asap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/rspxdp/rspxdp/msg"
	"github.com/rspxdp/rspxdp/transport"
	"github.com/rspxdp/rspxdp/wire"
)

// ErrNoRegistrar is returned when no registrar is configured or heard of.
var ErrNoRegistrar = errors.New("no registrar known: give WithRegistrars or WithAnnounces")

// registrarSet is the list of registrars a PE or PU knows: the static ones
// first, then those learned from Server Announces.
type registrarSet struct {
	mu       sync.Mutex
	addrs    []string
	onChange func([]string)
}

func (r *registrarSet) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.addrs)
}

func (r *registrarSet) add(a string) {
	r.mu.Lock()
	if slices.Contains(r.addrs, a) {
		r.mu.Unlock()
		return
	}
	r.addrs = append(r.addrs, a)
	l, f := slices.Clone(r.addrs), r.onChange
	r.mu.Unlock()
	if f != nil {
		f(l)
	}
}

// listenAnnounces adds every registrar announced on addr until ctx ends.
// It returns once the socket is bound.
func (r *registrarSet) listenAnnounces(ctx context.Context, addr string, log *slog.Logger, wg *sync.WaitGroup) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		if host, port, e := net.SplitHostPort(addr); e == nil && host == "" {
			ap, err = netip.ParseAddrPort("0.0.0.0:" + port)
		}
		if err != nil {
			return fmt.Errorf("announce address %q: %w", addr, err)
		}
	}
	rc, err := transport.ListenAnnounces(transport.AnnounceReceiverConfig{Addr: ap, Logger: log})
	if err != nil {
		return fmt.Errorf("listen for server announces on %s: %w", addr, err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer rc.Close()
		for {
			b, src, err := rc.Receive(ctx)
			if err != nil {
				return
			}
			m, err := msg.Decode(wire.ASAP, b)
			if err != nil {
				log.Debug("announce ignored", "from", src.String(), "err", err)
				continue
			}
			if a, ok := m.(msg.ServerAnnounce); ok {
				for _, ap := range a.ASAP {
					if ap.Addr().IsUnspecified() {
						ap = netip.AddrPortFrom(src.Addr(), ap.Port())
					}
					r.add(ap.String())
				}
			}
		}
	}()
	return nil
}

// validateAddrs checks that every registrar address is host:port.
func validateAddrs(addrs []string) error {
	for _, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("registrar address %q: want HOST:PORT", a)
		}
	}
	return nil
}
