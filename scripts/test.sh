#!/usr/bin/env bash
# Runs every test: unit tests under ASan + UBSan, then the KVM tests on real
# KVM (natively on a hardware-KVM host, otherwise inside the QEMU/TCG sandbox).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

scripts/install-deps.sh

echo "== unit tests (ASan + UBSan)"
scripts/build.sh build/sanitize -DVIM_SANITIZE=ON
ctest --test-dir build/sanitize -L unit --output-on-failure -j 2

echo "== KVM tests"
scripts/build.sh build/release -DCMAKE_BUILD_TYPE=Release
# A sandbox that froze (an emulator fault, see kvm-run) runs them again.
tests/kvm-sandbox/kvm-run --retries 2 -- ctest --test-dir build/release -L kvm --output-on-failure
