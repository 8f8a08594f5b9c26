#!/usr/bin/env bash
# Builds the libFuzzer targets with clang under ASan + UBSan in build/fuzz and
# runs each fuzzer from seeds the test driver lays out, splitting SECONDS
# (default 120) between them: scripts/fuzz.sh [SECONDS]
#   virtqueue_fuzz      descriptor chains popped from a queue in guest RAM
#   block_request_fuzz  virtio-blk requests decoded from such chains
# A crash leaves its input in build/fuzz/findings/<fuzzer>-* and fails the
# script; rerun it with build/fuzz/tests/fuzz/<fuzzer> FILE. FUZZ_BUILD names
# another build tree.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-120}
build=${FUZZ_BUILD:-$root/build/fuzz}
fuzzers=(virtqueue_fuzz block_request_fuzz)
each=$((seconds / ${#fuzzers[@]}))
((each > 0)) || each=1

CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DVIM_FUZZ=ON -DVIM_SANITIZE=ON > /dev/null
targets=()
for fuzzer in "${fuzzers[@]}"; do
    targets+=("$fuzzer" "${fuzzer}_seeds")
done
ninja -C "$build" -j "${JOBS:-2}" "${targets[@]}"

mkdir -p "$build/findings"
for fuzzer in "${fuzzers[@]}"; do
    # The corpus grows across runs; the seeds are rewritten each time.
    corpus=$build/corpus/${fuzzer%_fuzz}
    mkdir -p "$corpus"
    "$build/tests/fuzz/${fuzzer}_seeds" "$corpus"
    # Inputs: the fuzzers' headers (at most 48 bytes) and 16 pages of guest RAM.
    "$build/tests/fuzz/$fuzzer" -max_total_time="$each" -max_len=65584 -timeout=10 \
        -artifact_prefix="$build/findings/$fuzzer-" -print_final_stats=1 "$corpus"
done
