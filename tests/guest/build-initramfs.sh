#!/usr/bin/env bash
# Builds the gzip'd newc initramfs that VMM tests boot:
#
#   tests/guest/build-initramfs.sh OUTPUT.cpio.gz [KERNEL_VERSION]
#
# It holds a static busybox with its applet links, the static programs built
# from programs/*.c, init (see init for the guest.mode= values), and, given
# KERNEL_VERSION, that kernel's virtio and ext4 modules (Debian builds them as
# modules; init loads them in dependency order) and mke2fs with its libraries,
# for the disk tests. Everything
# comes from this folder and Debian packages (busybox-static, gcc, libc6-dev,
# binutils, cpio, gzip). Timestamps and owners are fixed, so the same inputs
# give the same bytes, and OUTPUT is replaced only once complete.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

[[ $# -eq 1 || $# -eq 2 ]] || { echo "usage: build-initramfs.sh OUTPUT.cpio.gz [KERNEL_VERSION]" >&2; exit 2; }
output=$1
kernel_version=${2:-}

fail() {
    echo "build-initramfs: $*" >&2
    exit 2
}

require() {
    command -v "$1" >/dev/null || fail "'$1' is missing (apt-get install $2)"
}
require busybox busybox-static
require gcc gcc
require readelf binutils
require cpio cpio
require gzip gzip
busybox=$(command -v busybox)
# Debian's plain busybox package is dynamically linked and cannot run alone.
if readelf -l "$busybox" | grep -q 'program interpreter'; then
    fail "$busybox is dynamically linked (apt-get install busybox-static)"
fi
[[ -f "$(gcc -print-file-name=libc.a)" ]] || fail "no static C library for gcc -static (apt-get install libc6-dev)"

work=$(mktemp -d "${TMPDIR:-/tmp}/guest-initramfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,etc,tmp}

cp "$busybox" "$root/bin/busybox"
while read -r applet; do
    [[ "$applet" == bin/busybox ]] || ln -sf /bin/busybox "$root/$applet"
done < <("$busybox" --list-full)

for source in "$here"/programs/*.c; do
    gcc -static -O2 -Wall -Wextra -Werror -o "$root/bin/$(basename "$source" .c)" "$source"
done

# The guest drivers the VMM's devices need, in the order modprobe would load
# them (each once), and the tools the disk tests run in the guest.
guest_modules=(virtio_pci virtio_blk virtio_net virtio_balloon virtio-rng ext4)
if [[ -n "$kernel_version" ]]; then
    require modprobe kmod
    require ldd libc-bin
    require mke2fs e2fsprogs
    mkdir -p "$root/lib/modules"
    for module in "${guest_modules[@]}"; do
        modprobe -S "$kernel_version" --show-depends "$module" | awk '$1 == "insmod" { print $2 }'
    done | awk '!seen[$0]++' > "$work/modules"
    while read -r module; do
        cp "$module" "$root/lib/modules/"
        echo "/lib/modules/$(basename "$module")"
    done < "$work/modules" > "$root/lib/modules/load-order"
    mke2fs=$(command -v mke2fs)
    mkdir -p "$root/lib64" "$root/lib/x86_64-linux-gnu" "$root/etc"
    # busybox's own mke2fs and mkfs.* links are replaced, not followed: they
    # point at /bin/busybox, which a copy through them would overwrite on the host.
    rm -f "$root/sbin/mke2fs" "$root/sbin/mkfs.ext4"
    cp "$mke2fs" "$root/sbin/mke2fs"
    ln -s mke2fs "$root/sbin/mkfs.ext4"
    for library in $(ldd "$mke2fs" | awk '/=>/ { print $3 } /ld-linux/ { print $1 }'); do
        rm -f "$root$library"
        cp -L "$library" "$root$library"
    done
    [[ -f /etc/mke2fs.conf ]] && cp /etc/mke2fs.conf "$root/etc/"
fi

cp "$here/init" "$root/init"
cp "$here/watch-neighbours" "$root/bin/watch-neighbours"
chmod 0755 "$root/init" "$root/bin/watch-neighbours"

find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --reproducible -R 0:0 --quiet) \
    | gzip -n -9 > "$work/initramfs.cpio.gz"
mv "$work/initramfs.cpio.gz" "$output"
