#!/usr/bin/env bash
# Builds the Debian 12 disk that KVM tests boot to a login prompt:
#
#   tests/guest/build-debian-image.sh [OUTPUT_DIR]
#
# OUTPUT_DIR (default: $VIM_DEBIAN_IMAGE_DIR, else /var/cache/vim-tests/debian-12) gets
#   debian.raw   ext4 on the whole 2 GiB sparse disk, no partition table: root=/dev/vda
#   vmlinuz      the host's newest /boot/vmlinuz-*, the kernel the tests run
#   initrd.img   Debian's own initramfs-tools initrd for that kernel, built in the image
#   stamp        what the build was made from; the same inputs again do nothing
#
# Boot with "console=ttyS0 root=/dev/vda rw". The guest is vim-guest, reaches
# multi-user.target, logs root in on ttyS0 by itself (serial-getty autologin; root's
# password is also empty for any other console) and the login shell prints
# VIM-DEBIAN-READY on a line of its own. It has no network configuration.
#
# The image holds the host's /lib/modules/<version> of that kernel, so kernel and
# modules match whatever linux-image the host has, even one the mirror no longer
# carries. Everything else comes from the bookworm mirror this machine's apt uses
# (override with VIM_DEBIAN_MIRROR) through debootstrap; the file system is made by
# mkfs.ext4 -d, so no loop device or mount of the image is needed. Runs as root.
# OUTPUT_DIR is replaced only once complete, and a lock beside it keeps two builds apart.
set -euo pipefail

script=$(readlink -f "${BASH_SOURCE[0]}")

fail() {
    echo "build-debian-image: $*" >&2
    exit 2
}

[[ $# -le 1 ]] || { echo "usage: build-debian-image.sh [OUTPUT_DIR]" >&2; exit 2; }
output=${1:-${VIM_DEBIAN_IMAGE_DIR:-/var/cache/vim-tests/debian-12}}
output=${output%/}
[[ -n "$output" ]] || fail "OUTPUT_DIR must not be /"

require() {
    command -v "$1" >/dev/null || fail "'$1' is missing (apt-get install $2)"
}
require debootstrap debootstrap
require mkfs.ext4 e2fsprogs
require unshare util-linux
require flock util-linux
[[ $(id -u) -eq 0 ]] || fail "debootstrap and chroot need root"

# Mounts made for the chroot (debootstrap's own, /proc) live in a private mount
# namespace, so an interrupted build cannot leave them behind on the host.
if [[ -z "${VIM_DEBIAN_IMAGE_UNSHARED:-}" ]]; then
    VIM_DEBIAN_IMAGE_UNSHARED=1 exec unshare --mount --propagation private -- "$script" "$output"
fi

kernel=$(find /boot -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
[[ -n "$kernel" ]] || fail "no /boot/vmlinuz-* (apt-get install linux-image-amd64)"
kernel_version=${kernel#/boot/vmlinuz-}
modules=/lib/modules/$kernel_version
[[ -f "$modules/modules.dep" ]] || fail "$kernel has no $modules/modules.dep (apt-get install linux-image-$kernel_version)"
[[ -f "/boot/config-$kernel_version" ]] || fail "$kernel has no /boot/config-$kernel_version"

# The first bookworm (not -updates, not -security) "deb" source apt uses, in either format.
apt_mirror() {
    local file
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$file" ]] || continue
        awk '$1 == "deb" { sub(/^deb +(\[[^]]*\] +)?/, ""); if ($2 == "bookworm") { print $1; exit } }' "$file"
    done
    for file in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$file" ]] || continue
        awk -v RS= '
            /(^|\n)Types:[^\n]*[ \t]deb([ \t]|\n|$)/ && /(^|\n)Suites:[^\n]*[ \t]bookworm([ \t]|\n|$)/ \
                && !/(^|\n)Enabled:[ \t]*no/ {
                match($0, /(^|\n)URIs:[ \t]*[^ \t\n]+/)
                uri = substr($0, RSTART, RLENGTH); sub(/^\n?URIs:[ \t]*/, "", uri); print uri; exit
            }' "$file"
    done
}
mirror=${VIM_DEBIAN_MIRROR:-$(apt_mirror | head -n 1)}
[[ -n "$mirror" ]] || fail "no bookworm source in /etc/apt/sources.list(.d); set VIM_DEBIAN_MIRROR"

mkdir -p "$(dirname "$output")"
exec 9>"$output.lock"
flock 9
# Left by a build that was killed; the lock says none is running now.
rm -rf --one-file-system "$(dirname "$output")"/.debian-image.*

stamp="script $(sha256sum < "$script" | cut -d' ' -f1)
kernel $kernel_version $(sha256sum < "$kernel" | cut -d' ' -f1)"
if [[ -f "$output/debian.raw" && -f "$output/vmlinuz" && -f "$output/initrd.img" \
      && "$(cat "$output/stamp" 2>/dev/null)" == "$stamp" ]]; then
    echo "build-debian-image: $output is up to date"
    exit 0
fi

started=$(date +%s)
# Beside OUTPUT_DIR, so that the finished folder is renamed into place, not copied.
work=$(mktemp -d "$(dirname "$output")/.debian-image.XXXXXX")
root=$work/root
cleanup() {
    # Unmount first (debootstrap's own mounts too, when it was interrupted): rm would
    # skip a mounted folder and leave $work behind.
    findmnt -rn -o TARGET | awk -v root="$root/" 'index($0, root) == 1' | sort -r | while read -r target; do
        umount -l "$target"
    done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

echo "build-debian-image: debootstrap bookworm from $mirror for kernel $kernel_version"
# Beyond minbase: systemd as init, udev for /dev and module autoloading, D-Bus for
# logind (which systemctl poweroff asks first), the initrd generator and what its
# root mount and fsck need.
debootstrap --variant=minbase --include=systemd-sysv,udev,dbus,kmod,initramfs-tools,e2fsprogs \
    bookworm "$root" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; fail "debootstrap failed (log above)"; }

mkdir -p "$root/lib/modules"
cp -a "$modules" "$root/lib/modules/"
cp "$kernel" "/boot/config-$kernel_version" "$root/boot/"
[[ -f "/boot/System.map-$kernel_version" ]] && cp "/boot/System.map-$kernel_version" "$root/boot/"

echo vim-guest > "$root/etc/hostname"
cat > "$root/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	vim-guest
::1		localhost ip6-localhost ip6-loopback
EOF
cat > "$root/etc/fstab" <<'EOF'
/dev/vda	/	ext4	rw,errors=remount-ro	0	1
EOF
# The host's resolver means nothing in a guest without a network.
rm -f "$root/etc/resolv.conf"

# The tests' disk is virtio-blk over PCI; "list" keeps the initrd small and
# its unpacking quick under TCG, and loads these at boot whatever udev finds.
# FSTYPE names root's type for the fsck hook, which would otherwise probe
# /dev/vda of the machine that builds the image.
sed -i -e 's/^MODULES=.*/MODULES=list/' -e 's/^#* *FSTYPE=.*/FSTYPE=ext4/' \
    "$root/etc/initramfs-tools/initramfs.conf"
grep -q '^FSTYPE=ext4$' "$root/etc/initramfs-tools/initramfs.conf" \
    || echo FSTYPE=ext4 >> "$root/etc/initramfs-tools/initramfs.conf"
cat >> "$root/etc/initramfs-tools/modules" <<'EOF'
virtio_pci
virtio_blk
crc32c_generic
ext4
EOF

mkdir -p "$root/etc/systemd/system/serial-getty@ttyS0.service.d"
cat > "$root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'EOF'
# Tests type at a shell on ttyS0 without going through a login prompt.
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 - $TERM
EOF
cat > "$root/etc/profile.d/vim-debian-ready.sh" <<'EOF'
# The line tests wait for once root's shell runs.
echo VIM-DEBIAN-READY
EOF
# Kernel messages would interleave with what tests read back from the shell.
cat > "$root/etc/sysctl.d/50-vim-quiet-console.conf" <<'EOF'
kernel.printk = 3 4 1 3
EOF
# Each boot writes the journal to RAM only, so booting leaves the disk as it was.
mkdir -p "$root/etc/systemd/journald.conf.d"
cat > "$root/etc/systemd/journald.conf.d/volatile.conf" <<'EOF'
[Journal]
Storage=volatile
EOF

# Timers that would start maintenance work during a test boot.
masked=()
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
            e2scrub_reap.service fstrim.timer man-db.timer systemd-timesyncd.service; do
    if [[ -e "$root/lib/systemd/system/$unit" ]]; then
        masked+=("$unit")
    fi
done

mount -t proc proc "$root/proc"
chroot "$root" /bin/sh -e -c '
    passwd -d root >/dev/null
    systemctl set-default multi-user.target >/dev/null 2>&1
    [ $# -eq 0 ] || systemctl mask "$@" >/dev/null 2>&1
    update-initramfs -c -k "'"$kernel_version"'" >/dev/null
    apt-get clean
' chroot-setup "${masked[@]}" > "$work/chroot.log" 2>&1 \
    || { tail -n 30 "$work/chroot.log" >&2; fail "configuring the image in its chroot failed (log above)"; }
umount "$root/proc"
rm -rf "$root"/var/lib/apt/lists/* "$root"/tmp/* "$root"/var/tmp/*

mkdir "$work/out"
cp "$root/boot/vmlinuz-$kernel_version" "$work/out/vmlinuz"
cp "$root/boot/initrd.img-$kernel_version" "$work/out/initrd.img"
truncate -s 2G "$work/out/debian.raw"
mkfs.ext4 -q -F -L vim-root -d "$root" "$work/out/debian.raw" \
    || fail "mkfs.ext4 -d $root failed"
printf '%s\n' "$stamp" > "$work/out/stamp"

if [[ -e "$output" ]]; then
    mv "$output" "$work/previous"
fi
mv "$work/out" "$output"
cleanup
trap - EXIT

used_kib=$(du -k "$output/debian.raw" | cut -f1)
echo "build-debian-image: built $output in $(( $(date +%s) - started ))s:" \
     "debian.raw $(( used_kib / 1024 )) MiB used of $(( $(stat -c %s "$output/debian.raw") >> 20 )) MiB," \
     "initrd.img $(( $(stat -c %s "$output/initrd.img") >> 10 )) KiB, kernel $kernel_version," \
     "masked: ${masked[*]:-none}"
