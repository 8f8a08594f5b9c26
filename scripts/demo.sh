#!/usr/bin/env bash
# The main job: builds the project and runs real guest code on KVM (natively
# on a hardware-KVM host, otherwise inside the QEMU/TCG sandbox), measuring
# the cost of a VM exit to this process against one handled in the kernel.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

scripts/install-deps.sh
scripts/build.sh build/release -DCMAKE_BUILD_TYPE=Release
tests/kvm-sandbox/kvm-run -- build/release/bench/kvm_exit_bench --benchmark_counters_tabular=true --benchmark_color=false
