#!/usr/bin/env bash
# Installs what building and testing the suite needs on Debian 12, as root.
# Idempotent: a second run installs nothing.
set -euo pipefail
pkgs=(git make gcc libc6-dev pkg-config libseccomp-dev iproute2 iptables nftables ipset conntrack
      kmod busybox ca-certificates curl user-mode-linux ipvsadm socat util-linux procps)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v go >/dev/null || { echo "go not found: this suite needs Go 1.26 at /usr/local/go" >&2; exit 1; }
