#!/usr/bin/env bash
# Mutation check for the real-kernel IPVS tests: for each mutation, build
# the test with a broken copy of one data-plane file swapped in through
# `go -overlay` (the tree is never touched), run `make test-ipvs`, and
# require it to FAIL, printing which subtests failed. Exit 1 if any mutation
# survives (the tests did not notice it).
#   usage: proxy/test/mutate.sh [NAME...]   (run from the repo root, as root)
set -uo pipefail
root=$(pwd)
work=$(mktemp -d /tmp/proxy-ipvs-mutate-XXXXXX)
trap 'rm -rf "$work"' EXIT
plane=$root/proxy/internal/ipvs/plane.go
rules=$root/proxy/internal/ipvs/rules.go
reconcile=$root/proxy/internal/ipvs/reconcile.go

# name|file|original text|replacement (fixed strings; each must match once)
mutations=(
  'no-drain|'$plane'|if r.ActiveConns+r.InactiveConns > 0 {|if false {'
  'wrong-scheduler|'$plane'|opts.Scheduler = "rr"|opts.Scheduler = "sh"'
  'no-masquerade|'$rules'|w("-A %s -j MASQUERADE --random-fully", chainPostrouting)|w("-A %s -j RETURN", chainPostrouting)'
  'etp-ignored|'$plane'|cl, ex := reals(st.ClusterEndpoints(k)), reals(st.ExternalEndpoints(k))|cl, ex := reals(st.ClusterEndpoints(k)), reals(st.ClusterEndpoints(k))'
  'no-affinity|'$plane'|Timeout: uint32(max(sp.StickyMaxAgeSeconds, 0))|Timeout: 0'
  'flush-on-start|'$plane'|p.vs = kernel|for k := range kernel { _ = p.os.DeleteVirtualServer(k) }; kernel = map[VSKey]VirtualServer{}; p.vs = kernel'
  'no-reconcile|'$reconcile'|if realsMatch(d.Reals, cur, p.terminating[vk]) {|if true {'
)
survived=0
for m in "${mutations[@]}"; do
  IFS='|' read -r name file from to <<<"$m"
  if (($#)) && [[ " $* " != *" $name "* ]]; then continue; fi
  mut=$work/$name-$(basename "$file")
  FROM=$from TO=$to python3 - "$file" "$mut" <<'PY' || { echo "mutation $name: pattern not found once in $file" >&2; exit 2; }
import os, sys
s = open(sys.argv[1]).read()
f, t = os.environ["FROM"], os.environ["TO"]
if s.count(f) != 1:
    sys.exit(1)
open(sys.argv[2], "w").write(s.replace(f, t))
PY
  printf '{"Replace":{"%s":"%s"}}\n' "$file" "$mut" > "$work/$name.json"
  echo "=== mutation $name: $(basename "$file"): '$from' -> '$to'"
  make --no-print-directory test-ipvs PROXY_IPVS_OVERLAY="$work/$name.json" > "$work/$name.log" 2>&1
  rc=$?
  fails=$(grep -E -- '--- FAIL' "$work/$name.log" | sed 's/^ *//' | sort -u | tr '\n' ';')
  if ((rc == 0)); then
    echo "SURVIVED (tests passed): $name"; survived=1
  else
    echo "killed: $name: ${fails:-no --- FAIL line, see below}"
    [[ -n "$fails" ]] || tail -20 "$work/$name.log"
  fi
done
exit $survived
