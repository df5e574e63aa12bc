# berth: build, test, demo. Everything runs as root (containers need it).
# Go from scripts/setup.sh when the PATH (e.g. sudo's secure_path) lacks it.
export PATH := $(PATH):/usr/local/go/bin
GO      ?= go
BIN     := bin/berth
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# Static, so the binary runs inside any rootfs; netgo/osusergo keep glibc's
# NSS and resolver out of it.
TAGS    := netgo,osusergo
LDFLAGS := -s -w -extldflags -static \
	-X github.com/berth-dev/berth/internal/version.Version=$(VERSION) \
	-X github.com/berth-dev/berth/internal/version.GitCommit=$(COMMIT)

.PHONY: build test unit demo bench fuzz vet clean bench-load bench-containers interop-docker \
	bench-registry interop-registry conformance bench-registry-server bench-network

build:
	CGO_ENABLED=1 $(GO) build -tags $(TAGS) -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/berth

vet:
	$(GO) vet ./...

# Every test: unit tests, root tests on the real kernel, end-to-end tests
# that drive the built binary. Packages run one at a time (-p 1) because
# the root tests share the host's cgroup and mount tables.
test: build vet
	$(GO) test -p 1 -count=1 -timeout 20m ./...
	GO=$(GO) ./scripts/conformance.sh $(BIN)

# The OCI distribution-spec conformance suite (pinned) against a fresh
# berth registry serve; every check must pass.
conformance: build
	GO=$(GO) ./scripts/conformance.sh $(BIN)

# Unit tests only (no root needed).
unit:
	$(GO) test -short -count=1 ./...

demo: build
	./scripts/demo.sh

bench: build
	./bench/runtime.sh

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzCompile -fuzztime=30s ./internal/runtime/seccomp/
	$(GO) test -run='^$$' -fuzz=FuzzParseSpec -fuzztime=30s ./internal/runtime/
	$(GO) test -run='^$$' -fuzz=FuzzUnpack -fuzztime=30s ./internal/snapshot/
	$(GO) test -run='^$$' -fuzz=FuzzParseRef -fuzztime=30s ./internal/image/
	$(GO) test -run='^$$' -fuzz=FuzzParseManifest -fuzztime=30s ./internal/registry/
	$(GO) test -run='^$$' -fuzz=FuzzNextLink -fuzztime=30s ./internal/registry/
	for f in FuzzValidateName FuzzParseReference FuzzParseDigest FuzzParseRoute FuzzParseManifest \
		FuzzParseHtpasswd FuzzParseScope FuzzVerifyToken; do \
		$(GO) test -run='^$$' -fuzz=$$f -fuzztime=30s ./internal/registry/server/ || exit 1; done
	$(GO) test -run='^$$' -fuzz=FuzzRespond -fuzztime=30s ./internal/network/dns/

clean:
	rm -rf bin

# berth load against docker load of a 300 MiB docker-archive, side by side
# (starts a private dockerd; see the script's header).
bench-load: build
	./bench/load.sh

# berth run/ps/logs against docker's on one busybox image: start latency
# (with runc and berth runtime on a bundle of it), 100 running containers
# (time, Pss), a 400 MiB log flood. Starts a private dockerd; see the script.
bench-containers: build
	./bench/containers.sh

# Exchange images with a private dockerd: go test TestDockerInterop, then
# berth save | docker load | docker run, docker save | berth load, skopeo.
interop-docker: build
	./scripts/interop-docker.sh

# berth pull (cold, and with 4 of 5 layers present) and berth push against
# docker's and skopeo's, with Debian's docker-registry on 127.0.0.1 and a
# 300 MiB image of 5 gzip layers. Starts a private dockerd and registries;
# see the script's header.
bench-registry: build
	./bench/registry.sh

# berth registry serve against Debian's docker-registry, both on 127.0.0.1
# with fresh storage: push and pull of a 200 MB one-layer image with skopeo
# (and crane if installed), curl of the blob and of a plain file, 1,000
# small pulls by 16 clients (bench/regload); MB/s, req/s, p99, registry
# peak RSS. See the script's header.
bench-registry-server: build
	./bench/registry-server.sh

# berth's bridge networking against docker's default bridge: the start cost
# of --network bridge over none, wrk against busybox httpd through a port
# published on 127.0.0.1 and direct, nc throughput container to container.
# Starts a private dockerd with docker0 (no iptables); see the script.
bench-network: build
	./bench/network.sh

# Exchange images through a docker-registry on 127.0.0.1: berth push ->
# skopeo, docker pull/run; docker push -> berth pull/run; skopeo copy ->
# berth pull/run; then the same through berth registry serve (docker push
# and pull into it). Starts a private dockerd and registries.
interop-registry: build
	./scripts/interop-registry.sh
