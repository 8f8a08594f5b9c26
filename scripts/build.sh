#!/usr/bin/env bash
# Configures and builds one tree: scripts/build.sh DIR [CMAKE_ARGS...] [-- TARGETS...]
# (every target when none is named).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=$1
shift
cmake_args=()
while (($#)) && [[ $1 != -- ]]; do
    cmake_args+=("$1")
    shift
done
(($#)) && shift
cmake -S "$root" -B "$root/$dir" -G Ninja "${cmake_args[@]}" > /dev/null
ninja -C "$root/$dir" -j "${JOBS:-2}" "$@"
