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

.PHONY: install all build test unit race fuzz generate bench bench-pps demo lint vmtest clean

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

bench:
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
VM_TIMEOUT  ?= 900

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

clean:
	rm -rf bin
