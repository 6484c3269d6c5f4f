#!/bin/bash
# make bench-runtime-shim: cribench against containerd's own CRI and ours,
# each on a private runtime stack of e2e/harness/runtime (not the local
# cluster), both up at once so that the rounds interleave.
# usage: bench.sh ARTIFACTS_CLI SHIM_BIN CRIBENCH_BIN [cribench flags]
set -euo pipefail
cli=$1 shim=$2 bench=$3
shift 3
dir=$(mktemp -d /tmp/rtshim-bench-XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	# The stacks remove their mounts, netns and bridges on exit; never rm
	# through a mount one left behind.
	if ! grep -q " $dir/" /proc/self/mountinfo; then rm -rf "$dir"; else echo "bench: mounts left under $dir" >&2; fi
}
trap cleanup EXIT
start() { # runtime subnet-octet
	"$cli" stack --runtime "$1" --shim "$shim" --dir "$dir/$1" --bridge "nsb-${1:0:6}" --subnet "10.251.$2.0/24" >"$dir/$1.out" 2>&1 &
	pids+=($!)
}
start containerd 21
start ours 22
for rt in containerd ours; do
	for _ in $(seq 600); do
		grep -q '^CRI socket:' "$dir/$rt.out" && break
		kill -0 "${pids[0]}" "${pids[1]}" 2>/dev/null || { cat "$dir/$rt.out"; exit 1; }
		sleep 0.5
	done
	grep -q '^CRI socket:' "$dir/$rt.out" || { echo "stack $rt did not come up"; cat "$dir/$rt.out"; exit 1; }
done
sock() { sed -n 's/^CRI socket: //p' "$dir/$1.out"; }
"$bench" --ours "$(sock ours)" --upstream "$(sock containerd)" "$@"
