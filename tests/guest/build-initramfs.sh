#!/usr/bin/env bash
# Builds the gzip'd newc initramfs that VMM tests boot:
#
#   tests/guest/build-initramfs.sh OUTPUT.cpio.gz
#
# It holds a static busybox with its applet links, the static programs built
# from programs/*.c and init (see init for the guest.mode= values). Everything
# comes from this folder and Debian packages (busybox-static, gcc, libc6-dev,
# binutils, cpio, gzip). Timestamps and owners are fixed, so the same inputs
# give the same bytes, and OUTPUT is replaced only once complete.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

[[ $# -eq 1 ]] || { echo "usage: build-initramfs.sh OUTPUT.cpio.gz" >&2; exit 2; }
output=$1

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

cp "$here/init" "$root/init"
chmod 0755 "$root/init"

find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --reproducible -R 0:0 --quiet) \
    | gzip -n -9 > "$work/initramfs.cpio.gz"
mv "$work/initramfs.cpio.gz" "$output"
