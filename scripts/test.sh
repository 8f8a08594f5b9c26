#!/usr/bin/env bash
# Runs every test: the format check, unit tests and the controller's process
# tests under ASan + UBSan, a bounded fuzzing run, then, in one sandbox (or
# natively on a hardware-KVM host), the network-namespace tests, the KVM
# tests and the system tests (vimd, hostd and guests end to end), with smoke
# runs of the network and migration benchmarks; then smoke runs of the other
# benchmarks.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

scripts/install-deps.sh

echo "== format (clang-format)"
scripts/check-format.sh

echo "== unit tests and the controller's process tests (ASan + UBSan)"
# Unoptimised: it builds three times faster than -O2, and the sanitizers find the same.
scripts/build.sh build/sanitize -DVIM_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -- tests_unit tests_controller tests_netns
ctest --test-dir build/sanitize -L 'unit|controller' --output-on-failure -j 2

echo "== fuzzing (60 s over the virtqueue and block request fuzzers)"
scripts/fuzz.sh 60

echo "== network-namespace tests, KVM tests, system tests, network and migration benchmark smoke runs"
scripts/build.sh build/release -DCMAKE_BUILD_TYPE=Release -- tests_kvm tests_e2e vimd \
    block_engine_bench migration_bench hwprobe_bench placement_bench
# The Debian image the distribution test boots: built once, then cached.
tests/guest/build-debian-image.sh
# One sandbox for all (it has the kernel modules for bridges, VLANs and
# vhost-net that a test's own network namespace needs); a sandbox that froze
# (an emulator fault, see kvm-run) runs them again.
tests/kvm-sandbox/kvm-run --retries 2 -- sh -c '
    ctest --test-dir build/sanitize -L netns --output-on-failure &&
    ctest --test-dir build/release -L kvm --output-on-failure &&
    bench/net_compare.py --quick --build build/release &&
    bench/migration_compare.py --quick --build build/release &&
    bench/cluster_compare.py --quick --build build/release'

echo "== benchmark smoke runs: block engine beside fio, migration engine beside TCP, hwprobe, placement, controller API"
bench/block_compare.py --quick --build build/release
build/release/bench/migration_bench --quick
build/release/bench/hwprobe_bench --benchmark_min_time=0.05
PLACEMENT_BENCH_DIR=/var/tmp build/release/bench/placement_bench --benchmark_min_time=0.05
bench/controller_compare.py --vimd build/release/controller/vimd/vimd --duration 2 --image-mib 64 --rounds 1
