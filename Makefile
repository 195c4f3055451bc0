# skiff — run `make help` for the targets.
SHELL := /usr/bin/env bash
GO    ?= go
BIN   := bin
PKGS  := ./...
TEST_TIMEOUT ?= 25m
# STATIC is how everything but the race-detector tests builds: binaries,
# images, helm, go vet, and the tests that link Kubernetes or helm
# (hack/test-packages.sh). One set of flags, so that Go's build cache
# compiles the Kubernetes client and helm once.
#
# GO_TAGS (hack/go-tags, read by hack/images.sh and the tests' builds too):
# grpcnotrace leaves golang.org/x/net/trace out of gRPC, and with it
# html/template, whose reflection keeps every exported method of every
# type alive in the linker: skiff-router 35 -> 24 MB, the controller and
# the node agent 77 -> 54 MB, and the sidecar's idle RSS with them.
GO_TAGS := $(strip $(file < hack/go-tags))
STATIC := CGO_ENABLED=0 GOFLAGS="$(GOFLAGS) -trimpath -tags=$(GO_TAGS)"

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the binaries into bin/.
	@mkdir -p $(BIN)
	$(STATIC) $(GO) build -o $(BIN)/ ./sidecar/cmd/... ./xds/cmd/... ./webhook/cmd/... ./test/cmd/... ./bpf/cmd/... ./cli/cmd/...
	@# The CLI is kubectl's plugin too: kubectl skiff runs kubectl-skiff.
	ln -sf skiff $(BIN)/kubectl-skiff

.PHONY: test
test: ## Run every test tier this machine can run (root runs the privileged ones and the end-to-end scenario; CI=true fails instead of skipping).
	@# skiff's own concurrent code under the race detector; the packages
	@# that link Kubernetes or helm with the static flags
	@# (hack/test-packages.sh); as root, the end-to-end scenario, whose
	@# cluster starts while the packages run (hack/test.sh).
	GO='$(GO)' TEST_TIMEOUT='$(TEST_TIMEOUT)' STATIC='$(STATIC)' SKIFF_E2E='$(SKIFF_E2E)' bash hack/test.sh

.PHONY: envtest
envtest: ## Build (or reuse) kube-apiserver and etcd for the envtest tier into bin/envtest.
	bash hack/envtest-assets.sh

.PHONY: test-short
test-short: ## Run the unit tests only.
	$(GO) test -short -count=1 $(PKGS)

.PHONY: lint
lint: ## gofmt, go vet, staticcheck (pinned in go.mod's tool block) and helm lint of charts/skiff.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(STATIC) $(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)
	helm=$$(bash hack/helm.sh) && HELM_CACHE_HOME=$(CURDIR)/.cache/helm HELM_CONFIG_HOME=$(CURDIR)/.cache/helm HELM_DATA_HOME=$(CURDIR)/.cache/helm \
		$$helm lint --strict charts/skiff --set site.name=lint

.PHONY: fuzz
fuzz: ## Run every fuzzer in the tree (each func Fuzz* of a tracked test file) for FUZZTIME (default 30s).
	@for f in $$(git ls-files '*_test.go' | xargs grep -l '^func Fuzz'); do \
		pkg=$$(dirname $$f); \
		for fn in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -d' ' -f2); do \
			echo "== $$pkg $$fn"; $(GO) test ./$$pkg -run '^$$' -fuzz "^$$fn$$" -fuzztime $${FUZZTIME:-30s} || exit 1; \
		done; \
	done

.PHONY: generate
generate: ## Regenerate the eBPF objects (bpf/redirect_bpfel.{go,o}) with Debian's clang.
	bash hack/gen-bpf.sh

.PHONY: verify-generated
verify-generated: ## Regenerate the eBPF objects and the console bundle and fail if they differ from the committed ones.
	bash hack/gen-bpf.sh --verify
	bash hack/gen-console.sh --verify

.PHONY: console
console: ## Rebuild the controller's console bundle (xds/console/dist) from xds/console/web (npm ci, esbuild); commit the result.
	bash hack/gen-console.sh

.PHONY: demo
demo: build ## Run a local three-site network (east, west, north) on loopback with east's console; no root needed; runs until Ctrl-C, or DEMO_FOR=30s.
	bash hack/demo.sh

.PHONY: bench
bench: build ## Benchmarks: data plane vs direct loopback and haproxy, HTTP per request vs haproxy mode http, HTTP multicast, eBPF, the mesh path hop by hop, xDS at 10k services x 1k clients, admission latency; see docs/.
	bash hack/bench/router.sh
	bash hack/bench/http.sh
	bash hack/bench/multicast.sh
	@if [ "$$(id -u)" = 0 ]; then bash hack/bench/ebpf.sh; else echo "skipping hack/bench/ebpf.sh: needs root"; fi
	@if [ "$$(id -u)" = 0 ]; then bash hack/bench/mesh.sh; else echo "skipping hack/bench/mesh.sh: needs root"; fi
	bash hack/bench/xds.sh
	SKIFF_BENCH=1 KUBEBUILDER_ASSETS=$$(bash hack/envtest-assets.sh) $(GO) test -run '^$$' -bench AdmissionLatency -benchtime 1x ./webhook/app

.PHONY: bench-http
bench-http: build ## HTTP per request (wrk 1 and 64 connections, h2load 16x10 streams): skiff-http vs direct, haproxy mode http and skiff-tcp; req/s, p50/p99, CPU and allocations per request.
	bash hack/bench/http.sh

.PHONY: bench-multicast
bench-multicast: build ## HTTP multicast to 6 endpoints in 3 sites (wrk POST, 1 and 16 connections): events and aggregate vs unicast (balanced) through the same gateways; req/s, p50/p99, CPU per request, copy counts.
	bash hack/bench/multicast.sh

.PHONY: bench-mesh
bench-mesh: build ## The mesh path hop by hop (root): pod -eBPF-> sidecar -> gateway -> link -> far gateway, against shorter paths and haproxy in each hop's place; budget per hop, sidecar RSS, targets.
	bash hack/bench/mesh.sh

.PHONY: bench-ebpf
bench-ebpf: ## eBPF redirect vs iptables REDIRECT vs direct: connect+first byte, conn/s, hook cost (root).
	bash hack/bench/ebpf.sh

.PHONY: images
images: ## Build skiff's container images into bin/images/ (go-containerregistry; no Docker needed).
	bash hack/images.sh

.PHONY: cluster-up
cluster-up: ## Start a real single-node Kubernetes cluster on this machine (root; cached builds; see docs/testing.md).
	bash hack/cluster-up.sh

.PHONY: cluster-down
cluster-down: ## Stop the cluster and remove everything cluster-up made.
	bash hack/cluster-down.sh

.PHONY: e2e
e2e: ## The end-to-end scenario on a real single-node cluster: cluster up, images, scenario, cluster down (root; SKIFF_E2E_KEEP=1 keeps it).
	bash hack/e2e.sh

.PHONY: clean
clean: ## Remove build output.
	rm -rf $(BIN)
