# ferry: make demo runs the whole thing on this machine; make test runs every test on real parts.
SHELL := /bin/bash
GO ?= go
FUZZTIME ?= 5s
K8S_BIN = $(shell test/k8sbin/build.sh)
SOPS_BIN = $(shell test/sopsbin/build.sh)
PROMTOOL_BIN = $(shell test/promtoolbin/build.sh)

.PHONY: all build test unit e2e fuzz vet demo bench control-plane clean

all: build

# Static, like the image: no cgo means no dynamic linking of the plugin package kustomize pulls
# in, which keeps ferry's resident memory down.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ferry ./cmd/ferry

# The local control plane (etcd, kube-apiserver, kube-controller-manager, kubectl), the OCI
# registry, and the sops and promtool CLIs the tests use, built once from the Go module proxy into
# ~/.cache/ferry and reused.
control-plane:
	@test/k8sbin/build.sh >/dev/null
	@test/registry/bin/build.sh >/dev/null
	@test/sopsbin/build.sh >/dev/null
	@test/promtoolbin/build.sh >/dev/null

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

test: control-plane vet
	FERRY_K8S_BIN=$(K8S_BIN) FERRY_SOPS_BIN=$(SOPS_BIN) FERRY_PROMTOOL_BIN=$(PROMTOOL_BIN) $(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) fuzz

# Each fuzz target runs briefly with its seed corpus: no panic, no tampered body accepted.
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) test/fuzz.sh

# Uses $$KUBECONFIG's cluster when set; otherwise the demo builds (first time) and starts the
# local control plane itself.
demo: build
	$(GO) run ./test/demo

bench: control-plane build
	FERRY_K8S_BIN=$(K8S_BIN) $(GO) run ./bench

clean:
	rm -rf bin
