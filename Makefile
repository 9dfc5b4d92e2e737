# rspxdp — build, test, generate, bench, demo.
#
# `make test` is the README's test command and what CI runs (.ci/run): lint,
# the full test suite (root-only tests included when run as root), a bounded
# run of every fuzz target, and the SCTP/rsplib test VM (vmtest).

GO        ?= go
BIN       ?= bin/rspxdp
# What `rspxdp --version` and rspxdp_build_info report (internal/telemetry).
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   ?= -X github.com/rspxdp/rspxdp/internal/telemetry.version=$(VERSION) \
	-X github.com/rspxdp/rspxdp/internal/telemetry.commit=$(COMMIT)
# Per-target fuzz budget, in executions rather than seconds: Go 1.26's fuzz
# coordinator can report a spurious "context deadline exceeded" when a
# duration runs out while a starved worker is mid-call (golang/go#75804,
# fixed in Go 1.27); a count has no deadline to race. 100,000 runs take a few
# seconds per target here: past the seed corpus, well inside CI's budget.
FUZZTIME  ?= 100000x
# package:FuzzTarget pairs run by `make fuzz`.
FUZZ_TARGETS ?= ./wire:FuzzDecodeMessage ./wire:FuzzParameters ./selector:FuzzOperations ./internal/capture:FuzzReader ./bpf:FuzzLbFrames ./asap:FuzzSession ./enrp:FuzzDecode ./security:FuzzParsePolicy ./security:FuzzMatch ./node:FuzzParseConfig ./node:FuzzParseVIP ./asap:FuzzParsePolicy ./cmd/rspxdp:FuzzRegistrarFlags
TESTFLAGS ?= -count=1 -timeout 15m

.PHONY: package install all build test unit race fuzz generate bench bench-go bench-pps demo lint vmtest clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/rspxdp

test: lint unit fuzz vmtest

unit:
	$(GO) test $(TESTFLAGS) ./...

race:
	$(GO) test -race $(TESTFLAGS) ./...

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$fn\$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

# Rebuild the BPF objects and their Go bindings (needs clang and llvm-strip).
generate:
	$(GO) generate ./bpf/...

# The data-plane benchmark table: XDP ns/packet above the test-run floor
# for each of Katran's reference workloads (with the floor, Katran's figure
# and the ratio; bpf's BenchmarkLb, BENCH_ROUNDS interleaved rounds on one
# pinned CPU), the cost of each section of lb.c per path (BenchmarkLbSections),
# packets/s through the LB namespace (XDP vs nftables vs
# HAProxy, e2e/TestPPS), and a PNG of a failover (e2e/TestFailoverPlot).
# Prints ONE table; rows and failover.png land in BENCH_OUT. Needs root,
# nftables and haproxy; a few minutes.
BENCH_OUT    ?= /tmp/rspxdp-bench
BENCH_ROUNDS ?= 11
bench:
	rm -rf $(BENCH_OUT) && mkdir -p $(BENCH_OUT)
	RSPXDP_BENCH_OUT=$(BENCH_OUT) $(GO) test -count=1 -timeout 20m -run='^$$' -bench='^BenchmarkLb$$' \
		-benchtime=$(BENCH_ROUNDS)x ./bpf > $(BENCH_OUT)/bpf.log 2>&1 || { tail -30 $(BENCH_OUT)/bpf.log; exit 1; }
	RSPXDP_BENCH_OUT=$(BENCH_OUT) $(GO) test -count=1 -timeout 10m -run='^$$' -bench='^BenchmarkLbSections$$' \
		-benchtime=$(BENCH_ROUNDS)x ./bpf > $(BENCH_OUT)/sections.log 2>&1 || { tail -30 $(BENCH_OUT)/sections.log; exit 1; }
	RSPXDP_BENCH_OUT=$(BENCH_OUT) $(GO) test -count=1 -timeout 10m -run='^$$' -bench='^BenchmarkConnTableCapacity$$' \
		-benchtime=1x ./bpf > $(BENCH_OUT)/capacity.log 2>&1 || { tail -30 $(BENCH_OUT)/capacity.log; exit 1; }
	RSPXDP_BENCH_OUT=$(BENCH_OUT) RSPXDP_PPS=1 RSPXDP_PPS_PACKETS=1000000 RSPXDP_PPS_ROUNDS=3 \
		$(GO) test -count=1 -v -timeout 10m -run '^(TestPPS|TestFailoverPlot)$$' ./e2e > $(BENCH_OUT)/e2e.log 2>&1 || { tail -30 $(BENCH_OUT)/e2e.log; exit 1; }
	@$(GO) run ./internal/benchtable/cmd/benchtable $(BENCH_OUT)
	@echo "failover plot: $(BENCH_OUT)/failover.png"

# Every Go benchmark of the module, as `go test -bench` prints them.
bench-go:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

# Packets per second through the LB namespace on veth: the XDP load balancer
# against nftables DNAT and HAProxy on the same topology (e2e/pps_test.go).
# Needs root, nftables and haproxy; PPS_PACKETS/PPS_ROUNDS bound each run.
PPS_PACKETS ?= 2000000
PPS_ROUNDS  ?= 5
bench-pps:
	RSPXDP_PPS=1 RSPXDP_PPS_PACKETS=$(PPS_PACKETS) RSPXDP_PPS_ROUNDS=$(PPS_ROUNDS) \
		$(GO) test -count=1 -v -timeout 10m -run '^TestPPS$$' ./e2e

demo: build
	./$(BIN) demo

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# Packages whose tests also run inside the test VM, where the kernel has SCTP.
VM_PACKAGES ?= ./transport ./enrp ./asap
# Bound, in seconds, on the guest's run (qemu is killed when it is reached).
VM_TIMEOUT  ?= 1200

# Boot the Debian test VM (vm/, image cached in /var/cache/rspxdp-vm): the
# VM_PACKAGES tests over real SCTP and the rsplib interop scenarios. Needs
# root, qemu-system-x86 and mmdebstrap: skipped without them (saying what to
# install), failed if CI=true. The first run builds the image (about a
# minute), later runs reuse it.
vmtest:
	RSPXDP_VM=1 RSPXDP_VM_PACKAGES="$(VM_PACKAGES)" RSPXDP_VM_TIMEOUT=$(VM_TIMEOUT) \
		$(GO) test -count=1 -v -timeout 45m ./vm

# Install the binary, the systemd units and (if none is there yet) the
# configuration: `make install`, then `systemctl daemon-reload` and
# `systemctl enable --now rspxdp-node` once /etc/rspxdp/rspxdp.yaml says
# which interfaces and VIPs. DESTDIR stages it elsewhere (packaging).
DESTDIR   ?=
PREFIX    ?= /usr
UNITDIR   ?= /lib/systemd/system
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/rspxdp
	install -D -m 0644 deploy/systemd/rspxdp-node.service $(DESTDIR)$(UNITDIR)/rspxdp-node.service
	install -D -m 0644 deploy/systemd/rspxdp-registrar.service $(DESTDIR)$(UNITDIR)/rspxdp-registrar.service
	install -D -m 0644 rspxdp.example.yaml $(DESTDIR)$(PREFIX)/share/doc/rspxdp/rspxdp.example.yaml
	test -e $(DESTDIR)/etc/rspxdp/rspxdp.yaml || \
		install -D -m 0640 rspxdp.example.yaml $(DESTDIR)/etc/rspxdp/rspxdp.yaml

# The Debian package (packaging/nfpm.yaml, nfpm as a Go tool dependency): the
# binary, both units, the configuration (a conffile), the dashboard, bash,
# zsh and fish completions and the manual pages, all generated from the
# binary just built. Written to PKG_OUT as rspxdp_VERSION_ARCH.deb.
# A tag v1.2.3[-n-gSHA] gives 1.2.3[~n~gSHA]; an untagged commit 0.0.0~gitSHA.
PKG_VERSION ?= $(shell echo '$(VERSION)' | sed -E -e 's/^v([0-9])/\1/' -e 't tag' -e 's/^/0.0.0~git/' -e ':tag' -e 's/-/~/g')
PKG_ARCH    ?= $(shell $(GO) env GOARCH)
PKG_OUT     ?= bin
# PKG_BIN: package this binary instead of building one (the tests do).
PKG_BIN     ?=
package:
	rm -rf build/pkg && mkdir -p build/pkg/completions build/pkg/man $(PKG_OUT)
	if [ -n "$(PKG_BIN)" ]; then cp $(PKG_BIN) build/pkg/rspxdp; else \
		$(GO) build -ldflags "$(LDFLAGS)" -o build/pkg/rspxdp ./cmd/rspxdp; fi
	build/pkg/rspxdp completion bash > build/pkg/completions/rspxdp.bash
	build/pkg/rspxdp completion zsh > build/pkg/completions/_rspxdp
	build/pkg/rspxdp completion fish > build/pkg/completions/rspxdp.fish
	build/pkg/rspxdp man build/pkg/man && gzip -9nf build/pkg/man/*.1
	PKG_VERSION='$(PKG_VERSION)' PKG_ARCH='$(PKG_ARCH)' \
		$(GO) tool nfpm package -f packaging/nfpm.yaml -p deb -t $(PKG_OUT)/

clean:
	rm -rf bin build
