#!/usr/bin/env bash
# Runs a command as root inside a user-mode-linux kernel (Debian's
# user-mode-linux: Linux 6.1 with IPVS), with the host's root as its root
# (hostfs), and exits with the command's status. Without -n no network device
# is given to the guest. With -n TAP,ADDR/PREFIX the guest's eth0 is joined to
# the host's existing tap device TAP (made by the caller) and gets ADDR; the
# guest gets no default route, so it can reach only that subnet (the host's
# end of the tap), never the host's uplink.
#   usage: run.sh [-m MEM] [-n TAP,ADDR/PREFIX] COMMAND [ARGS...]
set -euo pipefail
mem=768M
tap= guestaddr=
while (($#)); do
  case "$1" in
    -m) mem=$2; shift 2 ;;
    -n) tap=${2%%,*}; guestaddr=${2#*,}; shift 2
        [[ -n "$tap" && "$guestaddr" == */* ]] || { echo "-n wants TAP,ADDR/PREFIX" >&2; exit 2; } ;;
    *) break ;;
  esac
done
(($#)) || { echo "usage: $0 [-m MEM] [-n TAP,ADDR/PREFIX] COMMAND [ARGS...]" >&2; exit 2; }
command -v linux.uml >/dev/null || { echo "linux.uml not found: apt-get install user-mode-linux (make deps)" >&2; exit 3; }
ver=$(ls /usr/lib/uml/modules | sort -V | tail -1)
work=$(mktemp -d /tmp/proxy-uml-XXXXXX)
uml=
# UML runs in a session of its own; its helper processes share its process
# group, which is what the trap ends.
trap '[[ -n "$uml" ]] && kill -9 -- "-$uml" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/mods/lib"
ln -s /usr/lib/uml/modules "$work/mods/lib/modules"
depmod -b "$work/mods" "$ver"
printf '%q ' "$@" > "$work/cmd"
cat > "$work/init" <<INIT
#!/bin/bash
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /run
mount -t tmpfs tmp /var/run 2>/dev/null || true
mount -t devtmpfs dev /dev 2>/dev/null || true
export PATH=/usr/local/go/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
for m in ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_sh dummy veth nf_conntrack nf_nat nf_conntrack_netlink \
         x_tables ip_tables iptable_nat iptable_filter ip6_tables ip6table_nat ip6table_filter \
         nf_tables nft_compat nft_chain_nat nft_ct nft_masq \
         ip_set ip_set_hash_ip ip_set_hash_net ip_set_hash_ipport ip_set_hash_ipportip ip_set_hash_ipportnet ip_set_bitmap_port \
         xt_set xt_mark xt_comment xt_addrtype xt_conntrack xt_MASQUERADE xt_nat xt_tcpudp; do
  modprobe -d $work/mods \$m 2>>$work/modprobe.log || echo "modprobe \$m failed" >> $work/modprobe.log
done
ip link set lo up
if [[ -n "$guestaddr" ]]; then
  ip addr add $guestaddr dev eth0 && ip link set eth0 up || echo "eth0 setup failed" >> $work/modprobe.log
fi
cd "$PWD"
bash -c "\$(cat $work/cmd)" > $work/out 2>&1
echo \$? > $work/rc
sync
poweroff -f 2>/dev/null || halt -f 2>/dev/null || echo o > /proc/sysrq-trigger
INIT
chmod +x "$work/init"
# The guest's console goes to a file: UML puts the terminal in raw mode.
net=()
[[ -n "$tap" ]] && net=("eth0=tuntap,$tap")
setsid linux.uml mem="$mem" "${net[@]}" root=/dev/root rootfstype=hostfs rootflags=/ rw init="$work/init" \
  con=null con0=null,fd:1 > "$work/console" 2>&1 </dev/null &
uml=$!
wait "$uml" || true
kill -9 -- "-$uml" 2>/dev/null || true
uml=""

cat "$work/out" 2>/dev/null || true
if [[ ! -s "$work/rc" ]]; then
  echo "UML did not finish the command; console:" >&2
  tail -40 "$work/console" >&2
  exit 1
fi
exit "$(cat "$work/rc")"
