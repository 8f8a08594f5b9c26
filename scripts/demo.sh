#!/usr/bin/env bash
# The main job: builds the project, boots Debian's kernel in our vmm and
# drives it over its control socket, runs a small cloud (vimd, two hostd in
# network namespaces, two VMs, a live migration, a host evacuated), then
# measures the cost of a VM exit (natively on a hardware-KVM host, otherwise
# inside the QEMU/TCG sandbox); then this host's inventory and the
# controller, on loopback.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

scripts/install-deps.sh
scripts/build.sh build/release -DCMAKE_BUILD_TYPE=Release
tests/kvm-sandbox/kvm-run --retries 2 -- bash -c 'scripts/demo-vm.sh && scripts/demo-cluster.py &&
    echo "== cost of a VM exit: to this process vs. handled in the kernel" &&
    build/release/bench/kvm_exit_bench --benchmark_counters_tabular=true --benchmark_color=false 2>&1 |
        grep -E "^(Benchmark|BM_|-)"'
scripts/demo-controller.sh build/release
