#!/usr/bin/env bash
# The controller's part of the main job, on loopback: this host's inventory
# (hwprobe), then vimd with a fresh SQLite store, driven through vimctl.
# (scripts/demo-cluster.py shows the controller with host agents and guests.)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build/release}
vimctl=$build/controller/vimctl/vimctl

echo "== hwprobe: this host's inventory (the JSON an agent registers with; here as a table)"
"$build/hwprobe/hwprobe" --format table

state=$(mktemp -d /tmp/vim-demo-controller.XXXXXX)
"$build/controller/vimd/vimd" --listen 127.0.0.1:0 --state-dir "$state" > "$state/vimd.out" 2> "$state/vimd.log" &
vimd=$!
trap 'kill "$vimd" 2>/dev/null; wait "$vimd" 2>/dev/null; rm -rf "$state"' EXIT
for _ in $(seq 100); do
    grep -q "listening on" "$state/vimd.out" && break
    sleep 0.1
done
export VIM_CONTROLLER=$(sed -n 's/^vimd: listening on //p' "$state/vimd.out")
echo "== vimd on $VIM_CONTROLLER, store $state/vimd.db"
echo "== vimctl network create; group create; image upload (the test initramfs)"
"$vimctl" network create blue --vlan 100 --cidr 10.1.0.0/24
"$vimctl" group create web --policy anti-affinity
"$vimctl" image upload "$build/tests/guest/initramfs.cpio.gz" --name demo-initramfs
echo "== vimctl network list; image list; host list"
"$vimctl" network list
"$vimctl" image list
"$vimctl" host list
echo "== a bad request is refused with the field it is about"
"$vimctl" network create red --vlan 100 --cidr 10.2.0.0/24 || true
echo "== /metrics (Prometheus), the first lines"
curl -s "$VIM_CONTROLLER/metrics" | grep -v '^#' | head -n 8
