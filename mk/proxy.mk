# The proxy's targets (owner: the proxy engineers). See ../shared/DESIGN.md.
PROXY_UML_OUT := $(OUT)/proxy-uml

.PHONY: test-ipvs bench-proxy-ipvs

# Run by `make test` (root, user-mode-linux from hack/deps.sh; ~2 minutes).
TEST_TARGETS  += test-ipvs
# Fake-kernel figures only: the UML ours-vs-kube-proxy comparison is not built yet.
BENCH_TARGETS += bench-proxy-ipvs

## test-ipvs: the proxy's real-kernel IPVS tests inside user-mode-linux
## (the host kernel has no IPVS). The test binary is built on the host and
## run in the guest, whose root is the host's root. Debian's UML kernel has
## no nft_chain_nat module, so iptables-nft cannot make nat chains there:
## the guest's PATH puts the legacy iptables first.
test-ipvs:
	@mkdir -p $(PROXY_UML_OUT)/legacy
	cd proxy && go test -c -o $(PROXY_UML_OUT)/ipvs.test ./test/ipvs
	@for c in iptables iptables-restore iptables-save ip6tables ip6tables-restore ip6tables-save; do \
	  ln -sf /usr/sbin/$${c/tables/tables-legacy} $(PROXY_UML_OUT)/legacy/$$c; done
	timeout 15m proxy/test/uml/run.sh env PATH=$(PROXY_UML_OUT)/legacy:/usr/sbin:/usr/bin:/sbin:/bin NODESUITE_UML_IPVS=1 $(PROXY_UML_ENV) \
	  $(PROXY_UML_OUT)/ipvs.test -test.v -test.count=1 -test.timeout 8m

## bench-proxy-ipvs: desired-state build and IPVS diff at 1,000 and 10,000 Services (fake kernel)
bench-proxy-ipvs:
	cd proxy && go test -run '^$$' -bench . -benchmem -benchtime 5x -timeout 20m ./internal/ipvs/ ./internal/servicestate/

.PHONY: test-proxy-nftables bench-proxy-nftables

# The nftables data plane against the real kernel's nftables, in network
# namespaces the test creates (root; skips without it or without nft).
TEST_TARGETS  += test-proxy-nftables
BENCH_TARGETS += bench-proxy-nftables

## test-proxy-nftables: the nftables data plane's real-kernel integration tests
test-proxy-nftables:
	cd proxy && go test -count=1 -timeout 5m -run Integration -v ./internal/nftables/

## bench-proxy-nftables: full sync and one-Service change with real nft (1,000 and 10,000 Services)
bench-proxy-nftables:
	cd proxy && go test -run '^$$' -bench . -benchtime 3x -timeout 20m ./internal/nftables/
