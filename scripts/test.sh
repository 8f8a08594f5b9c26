#!/usr/bin/env bash
# Runs every test: the format check, unit tests under ASan + UBSan, a bounded
# fuzzing run, then the KVM tests on real KVM (natively on a hardware-KVM
# host, otherwise inside the QEMU/TCG sandbox), then a smoke run of the block
# engine's benchmark beside fio.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

scripts/install-deps.sh

echo "== format (clang-format)"
scripts/check-format.sh

echo "== unit tests (ASan + UBSan)"
scripts/build.sh build/sanitize -DVIM_SANITIZE=ON
ctest --test-dir build/sanitize -L unit --output-on-failure -j 2

echo "== fuzzing (60 s over the virtqueue and block request fuzzers)"
scripts/fuzz.sh 60

echo "== KVM tests"
scripts/build.sh build/release -DCMAKE_BUILD_TYPE=Release
# The Debian image the distribution test boots: built once, then cached.
tests/guest/build-debian-image.sh
# A sandbox that froze (an emulator fault, see kvm-run) runs them again.
tests/kvm-sandbox/kvm-run --retries 2 -- ctest --test-dir build/release -L kvm --output-on-failure

echo "== benchmark smoke run: our block engine beside fio"
bench/block_compare.py --quick --build build/release
