#!/usr/bin/env bash
# Builds the libFuzzer targets with clang under ASan + UBSan in build/fuzz and
# runs the virtqueue fuzzer for SECONDS (default 60) from seeds the test
# driver lays out: scripts/fuzz.sh [SECONDS]
# A crash leaves its input in build/fuzz/findings/ and fails the script; rerun
# it with build/fuzz/tests/fuzz/virtqueue_fuzz FILE.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-60}
build=$root/build/fuzz

CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DVIM_FUZZ=ON -DVIM_SANITIZE=ON > /dev/null
ninja -C "$build" -j "${JOBS:-2}" virtqueue_fuzz virtqueue_fuzz_seeds

# The corpus grows across runs; the seeds are rewritten each time.
corpus=$build/corpus/virtqueue
mkdir -p "$corpus" "$build/findings"
"$build/tests/fuzz/virtqueue_fuzz_seeds" "$corpus"
"$build/tests/fuzz/virtqueue_fuzz" -max_total_time="$seconds" -max_len=65560 -timeout=10 \
    -artifact_prefix="$build/findings/" -print_final_stats=1 "$corpus"
