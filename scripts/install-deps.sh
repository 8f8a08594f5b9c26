#!/usr/bin/env bash
# Installs the Debian 12 packages the build, the tests and the demo need;
# does nothing when they are all there already.
set -euo pipefail

packages=(
    build-essential cmake ninja-build pkg-config
    linux-libc-dev liburing-dev libnl-3-dev libnl-route-3-dev
    nlohmann-json3-dev libcli11-dev liblzma-dev zlib1g-dev libzstd-dev libbz2-dev liblzo2-dev liblz4-dev libxxhash-dev
    libsqlite3-dev libcpp-httplib-dev libssl-dev libspdlog-dev sqlite3 wrk curl
    libgtest-dev libgmock-dev libbenchmark-dev acpica-tools
    clang libclang-rt-14-dev clang-format
    qemu-system-x86 linux-image-amd64 busybox-static cpio iproute2 python3 python3-jsonschema bc
    debootstrap e2fsprogs
    fio
    gzip bzip2 xz-utils lzop lz4 zstd
)

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install-deps: run as root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
