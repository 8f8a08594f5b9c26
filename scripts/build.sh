#!/usr/bin/env bash
# Configures and builds one tree: scripts/build.sh DIR [CMAKE_ARGS...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=$1
shift
cmake -S "$root" -B "$root/$dir" -G Ninja "$@" > /dev/null
ninja -C "$root/$dir" -j "${JOBS:-2}"
