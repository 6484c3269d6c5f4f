# The node suite's entry points. The contract these targets keep is in
# ../shared/DESIGN.md; CI runs `make test` through .ci/run.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
export GOFLAGS ?= -buildvcs=false
export CGO_ENABLED ?= 0

ROOT       := $(abspath .)
OUT        := $(ROOT)/_output
BIN        := $(OUT)/bin
MODULES    := shared kubelet runtime-shim proxy e2e
DAEMONS    := kubelet runtime-shim proxy

VERSION    ?= $(or $(shell git describe --tags --always --dirty 2>/dev/null),v0.0.0-dev)
COMMIT     ?= $(or $(shell git rev-parse --verify -q HEAD 2>/dev/null),unknown)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
VPKG       := github.com/nodesuite/nodesuite/shared/version
LDFLAGS    := -s -w -X $(VPKG).gitVersion=$(VERSION) -X $(VPKG).gitCommit=$(COMMIT) -X $(VPKG).buildDate=$(BUILD_DATE)

# Component choices for `make up`; see README.
KUBELET ?= ours
RUNTIME ?= ours
PROXY   ?= ours

.PHONY: all build test test-unit lint clean deps bench

all: build

## build: the three daemons, version-stamped, into _output/bin
build:
	@mkdir -p $(BIN)
	@for d in $(DAEMONS); do \
	  echo "go build $$d"; \
	  (cd $$d && go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/$$d ./cmd/$$d); \
	done

## deps: the apt packages and Go tools the tests need (idempotent)
deps:
	bash hack/deps.sh

# Each component's own targets live in mk/<component>.mk; a file there adds
# its integration tests to TEST_TARGETS and its benchmarks to BENCH_TARGETS,
# so components never edit each other's rules.
TEST_TARGETS  :=
BENCH_TARGETS :=
-include mk/*.mk

## test: what CI runs (the README's test command): lint, unit tests, then
## each component's integration tests and the e2e suite on a local cluster.
test: lint test-unit
	@for t in $(TEST_TARGETS); do echo "== make $$t"; $(MAKE) --no-print-directory $$t; done

## bench: every component's benchmarks, each printed as ours vs upstream
bench:
	@if [ -z "$(strip $(BENCH_TARGETS))" ]; then echo "make bench: no benchmarks yet"; exit 1; fi
	@for t in $(BENCH_TARGETS); do echo "== make $$t"; $(MAKE) --no-print-directory $$t; done

## test-unit: every module's unit tests (no root, no kernel features needed)
test-unit:
	@for m in $(MODULES); do \
	  echo "== go test $$m"; \
	  (cd $$m && go test -count=1 ./...); \
	done

## lint: gofmt and go vet over every module
lint:
	@bad=$$(gofmt -l $(MODULES) tools); if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi
	@for m in $(MODULES); do (cd $$m && go vet ./...); done

clean:
	rm -rf $(OUT)

