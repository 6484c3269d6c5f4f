# The proxy's targets (owner: the proxy engineers). See ../shared/DESIGN.md.
PROXY_UML_OUT := $(OUT)/proxy-uml

.PHONY: test-ipvs bench-proxy-ipvs

# Run by `make test` (root, user-mode-linux from hack/deps.sh; ~2 minutes).
TEST_TARGETS  += test-ipvs
# Ours vs kube-proxy IPVS in user-mode-linux (~17 minutes on a busy 2-core machine,
# 9 of them writing 10,000 Services to the API server), then fake-kernel figures.
BENCH_TARGETS += bench-proxy-ipvs
NODESUITE_CACHE_BIN ?= $(or $(NODESUITE_CACHE),/var/cache/nodesuite)/bin

## test-ipvs: the proxy's real-kernel IPVS tests inside user-mode-linux
## (the host kernel has no IPVS). The test binary is built on the host and
## run in the guest, whose root is the host's root. umlhost starts a real
## control plane on the host and joins the guest to it over a private tap
## /30 (no route beyond it); the test writes Services, EndpointSlices and the
## Node through that API server and the proxy watches them. Debian's UML
## kernel has no nft_chain_nat module, so iptables-nft cannot make nat chains
## there: the guest's PATH puts the legacy iptables first.
## PROXY_IPVS_OVERLAY=file.json builds the test with `go -overlay` (the
## mutation check, proxy/test/mutate.sh, uses it).
test-ipvs:
	@mkdir -p $(PROXY_UML_OUT)/legacy
	cd proxy && go test -c $(if $(PROXY_IPVS_OVERLAY),-overlay $(PROXY_IPVS_OVERLAY)) -o $(PROXY_UML_OUT)/ipvs.test ./test/ipvs
	cd e2e && go build -o $(PROXY_UML_OUT)/umlhost ./bench/proxy-ipvs/cmd/umlhost
	@for c in iptables iptables-restore iptables-save ip6tables ip6tables-restore ip6tables-save; do \
	  ln -sf /usr/sbin/$${c/tables/tables-legacy} $(PROXY_UML_OUT)/legacy/$$c; done
	timeout 15m $(PROXY_UML_OUT)/umlhost -run-sh proxy/test/uml/run.sh -- \
	  env PATH=$(PROXY_UML_OUT)/legacy:/usr/sbin:/usr/bin:/sbin:/bin NODESUITE_UML_IPVS=1 $(PROXY_UML_ENV) \
	  $(PROXY_UML_OUT)/ipvs.test -test.v -test.count=1 -test.timeout 8m $(PROXY_IPVS_TESTFLAGS)

## bench-proxy-ipvs: ours vs upstream kube-proxy --proxy-mode=ipvs in user-mode-linux,
## same run, same API server (host control plane over a tap): full sync at
## 1,000 and 10,000 Services x 10 endpoints, one EndpointSlice change p50/p99,
## RSS; measured from the kernel's IPVS table: GET_DEST netlink reads of the
## Services not yet verified (one verified is not read again), a pass over
## them once a hint (a random sample complete, or the proxy's own synced
## metric) says the sync may be done; complete = the end of the pass that
## leaves none (the observer's hint time and CPU are printed). Then the
## fake-kernel Go benchmarks of the desired-state build and diff, and one
## EndpointSlice change end to end through the daemon's path (informer,
## syncer, plane, fake kernel) after a full sync, p50/p99, on one CPU.
## PROXY_IPVS_BENCH_FLAGS passes flags (e.g. -sizes 1000 -changes 20).
bench-proxy-ipvs:
	@mkdir -p $(PROXY_UML_OUT)/legacy
	cd proxy && go build -o $(PROXY_UML_OUT)/proxy ./cmd/proxy && go build -o $(PROXY_UML_OUT)/ipvsbench ./test/ipvsbench
	cd e2e && go build -o $(PROXY_UML_OUT)/proxy-ipvs-bench ./bench/proxy-ipvs
	@for c in iptables iptables-restore iptables-save ip6tables ip6tables-restore ip6tables-save; do \
	  ln -sf /usr/sbin/$${c/tables/tables-legacy} $(PROXY_UML_OUT)/legacy/$$c; done
	timeout 30m $(PROXY_UML_OUT)/proxy-ipvs-bench -run-sh proxy/test/uml/run.sh -guest $(PROXY_UML_OUT)/ipvsbench \
	  -ours $(PROXY_UML_OUT)/proxy -upstream $(NODESUITE_CACHE_BIN)/kube-proxy \
	  -guest-path $(PROXY_UML_OUT)/legacy:/usr/sbin:/usr/bin:/sbin:/bin -out $(PROXY_UML_OUT)/bench $(PROXY_IPVS_BENCH_FLAGS)
	cd proxy && go test -run '^$$' -bench . -benchmem -benchtime 5x -timeout 20m ./internal/ipvs/ ./internal/servicestate/
	cd proxy && go test -run '^$$' -bench OneChangeEndToEnd -benchtime 400x -cpu 1 -timeout 10m ./internal/app/

.PHONY: test-proxy-nftables bench-proxy-nftables

# The nftables data plane against the real kernel's nftables, in network
# namespaces the test creates (root; skips without it or without nft).
TEST_TARGETS  += test-proxy-nftables
BENCH_TARGETS += bench-proxy-nftables

## test-proxy-nftables: the nftables data plane's real-kernel integration tests
test-proxy-nftables:
	cd proxy && go test -count=1 -timeout 5m -run Integration -v ./internal/nftables/

## bench-proxy-nftables: ours vs upstream kube-proxy --proxy-mode=nftables, same
## run, one control plane, each proxy in a network namespace of its own: full
## sync at 1,000 and 10,000 Services x 10 endpoints, one Service change
## applied (p50/p99 over 50), CPU and RSS; timed from the kernel (root).
PROXY_NFT_BENCH_OUT ?= $(OUT)/bench-proxy-nftables
PROXY_NFT_BENCH_FLAGS ?=
bench-proxy-nftables:
	@mkdir -p $(PROXY_NFT_BENCH_OUT)
	cd proxy && go build -o $(PROXY_NFT_BENCH_OUT)/proxy ./cmd/proxy
	cd e2e && go build -o $(PROXY_NFT_BENCH_OUT)/bench ./bench/proxy-nftables
	timeout 40m $(PROXY_NFT_BENCH_OUT)/bench -dir $(PROXY_NFT_BENCH_OUT)/run -ours $(PROXY_NFT_BENCH_OUT)/proxy $(PROXY_NFT_BENCH_FLAGS)

.PHONY: bench-proxy-nftables-dataplane
## bench-proxy-nftables-dataplane: the data plane alone (no API, no process):
## full sync and one change with knftables' Fake, tx-only and real nft
bench-proxy-nftables-dataplane:
	cd proxy && go test -run '^$$' -bench . -benchtime 3x -timeout 20m ./internal/nftables/
