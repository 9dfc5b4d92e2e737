// Package telemetry is what every rspxdp daemon exposes to its operator: the
// build it runs (version, commit, Go version), a Prometheus registry that
// already holds the standard collectors (go_*, process_*, rspxdp_build_info),
// and the HTTP handlers of the metrics listener — /metrics, /healthz
// (the process answers) and /readyz (every readiness check passes), the
// endpoints Prometheus, Kubernetes and load balancers expect.
//
// Subsystems register their own collectors on the registry a daemon creates
// here; readiness checks are plain functions the daemon lists.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// version and commit are set at link time by the Makefile:
//
//	-ldflags "-X github.com/rspxdp/rspxdp/internal/telemetry.version=v1.2.3
//	          -X github.com/rspxdp/rspxdp/internal/telemetry.commit=abc123"
//
// They are package variables because -X can set nothing else; a plain
// `go build` or `go install` leaves them empty and Build falls back to the
// build information the Go toolchain embeds.
var (
	version string
	commit  string
)

// BuildInfo names the build of the running binary.
type BuildInfo struct {
	// Version is the release (a git tag or `git describe`), or the module
	// version the Go toolchain derived, or "devel".
	Version string
	// Commit is the VCS revision, with "-dirty" when the tree had
	// uncommitted changes, or "unknown".
	Commit string
	// GoVersion is the toolchain that built the binary.
	GoVersion string
}

// String is the one-line form `rspxdp --version` prints.
func (b BuildInfo) String() string {
	return fmt.Sprintf("rspxdp %s (commit %s, %s)", b.Version, b.Commit, b.GoVersion)
}

// Build returns the running binary's build: the link-time values when the
// Makefile set them, else what runtime/debug recorded (module version,
// vcs.revision and vcs.modified).
func Build() BuildInfo {
	b := BuildInfo{Version: version, Commit: commit, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		var rev string
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if b.Commit == "" && rev != "" {
			b.Commit = rev
			if dirty {
				b.Commit += "-dirty"
			}
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

// NewRegistry returns a registry holding the standard collectors every
// rspxdp daemon exports: the Go runtime's (go_*), the process's (process_*:
// CPU, memory, file descriptors, start time) and rspxdp_build_info.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	b := Build()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rspxdp_build_info",
		Help: "The running build: always 1, labelled with the version, commit and Go version.",
		ConstLabels: prometheus.Labels{
			"version": b.Version, "commit": b.Commit, "goversion": b.GoVersion,
		},
	})
	info.Set(1)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		info,
	)
	return reg
}

// Check is one readiness condition: Func returns nil when it holds, else an
// error saying what is missing (shown by /readyz).
type Check struct {
	Name string
	Func func() error
}

// Mux returns the handlers of a metrics listener:
//
//	/metrics  the registry, in the Prometheus text (or OpenMetrics) format
//	/healthz  200 "ok" while the process serves HTTP at all (liveness)
//	/readyz   200 when every check passes, else 503; the body lists each
//	          check as "[+]name ok" or "[-]name: why", as Kubernetes does
//
// Callers may add more handlers to the returned mux.
func Mux(reg *prometheus.Registry, checks []Check) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		body, ok := Ready(checks)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write([]byte(body))
	})
	return mux
}

// Ready runs the checks and returns the /readyz body and whether all passed.
func Ready(checks []Check) (string, bool) {
	var b strings.Builder
	ok := true
	for _, c := range checks {
		if err := c.Func(); err != nil {
			ok = false
			fmt.Fprintf(&b, "[-]%s: %v\n", c.Name, err)
		} else {
			fmt.Fprintf(&b, "[+]%s ok\n", c.Name)
		}
	}
	if ok {
		b.WriteString("ready\n")
	} else {
		b.WriteString("not ready\n")
	}
	return b.String(), ok
}

// Server is a metrics listener: the HTTP server of Mux on a bound socket.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen binds addr (HOST:PORT; ":0" picks a port) for handler.
func Listen(addr string, handler http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen %s: %w", addr, err)
	}
	return NewServer(ln, handler), nil
}

// NewServer serves handler on an already bound listener.
func NewServer(ln net.Listener, handler http.Handler) *Server {
	return &Server{ln: ln, srv: &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}}
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until ctx ends, then shuts down, giving open requests up to
// two seconds. It returns nil after ctx ended, the error otherwise.
func (s *Server) Serve(ctx context.Context, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("metrics: serve %s: %w", s.ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil && log != nil {
		log.Warn("metrics: shut down", "addr", s.ln.Addr().String(), "err", err)
	}
	return nil
}

// Close stops serving at once (also when Serve never ran).
func (s *Server) Close() error {
	return errors.Join(s.srv.Close(), ignoreClosed(s.ln.Close()))
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
