#!/usr/bin/env bash
# The demo's guest part; runs where /dev/kvm works (scripts/demo.sh puts it
# there). Boots Debian's own kernel in our vmm with 2 vCPUs, drives it over
# its control socket (status, pause, resume, graceful shutdown), then boots it
# again, as the bzImage and unpacked, to show what the guest sees of its
# machine and how soon its /init runs, and once more with a virtio disk that
# the guest formats and writes and the host then reads.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$root/build/release
kernel=$(ls /boot/vmlinuz-* | sort | tail -n 1)
initrd=$build/tests/guest/initramfs.cpio.gz
work=$(mktemp -d /tmp/vmm-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
socket=$work/api.sock
console=$work/console.log

# One JSON request per line on the control socket, one reply back.
control() {
    python3 - "$socket" "$1" <<'PY'
import socket, sys
client = socket.socket(socket.AF_UNIX)
client.settimeout(60)
client.connect(sys.argv[1])
client.sendall(sys.argv[2].encode() + b"\n")
reply = b""
while not reply.endswith(b"\n"):
    chunk = client.recv(65536)
    if not chunk:
        break
    reply += chunk
print(reply.decode().strip())
PY
}

wait_for() {  # wait_for TEXT: until the console shows TEXT
    for _ in $(seq 600); do
        grep -q "$1" "$console" 2>/dev/null && return 0
        sleep 0.5
    done
    echo "demo: the guest never printed '$1'" >&2
    exit 1
}

echo "== boot $kernel: 2 vCPUs, 256 MiB, guest prints a counter every 100 ms"
start=$(date +%s.%N)
"$build/vmm/vmm" --kernel "$kernel" --initrd "$initrd" --cpus 2 --memory 256M \
    --cmdline "console=ttyS0 reboot=k panic=1 quiet guest.mode=counter" \
    --serial "file=$console" --api-socket "$socket" &
vmm=$!
wait_for "count 5"
echo "   guest counting after $(echo "$(date +%s.%N) - $start" | bc) s: $(tail -n 1 "$console")"
echo "== status";  control '{"cmd":"status"}'
echo "== pause";   control '{"cmd":"pause"}'
before=$(tail -n 1 "$console"); sleep 2; after=$(tail -n 1 "$console")
echo "   2 s paused: last line before '$before', after '$after'"
echo "== resume";  control '{"cmd":"resume"}'
sleep 2
echo "   2 s later: $(tail -n 1 "$console")"
echo "== stats";   control '{"cmd":"stats"}'
echo "== graceful shutdown (Ctrl-Alt-Del to the guest's init)"
control '{"cmd":"shutdown","timeout_ms":30000}'
status=0; wait "$vmm" || status=$?
echo "   vmm exited with $status; the guest's last lines:"
tail -n 4 "$console" | sed 's/^/   | /'

# boot_report KERNEL: boots KERNEL with 4 vCPUs and 512 MiB to the report
# mode of the test guest, printing what it sees and when /init started.
boot_report() {
    local start status
    start=$(date +%s.%N)
    "$build/vmm/vmm" --kernel "$1" --initrd "$initrd" --cpus 4 --memory 512M \
        --cmdline "console=ttyS0 reboot=k panic=1 quiet guest.mode=report" |
        while IFS= read -r line; do
            case "$line" in
                VIM-GUEST-READY*) echo "   | $line (/init started $(echo "$(date +%s.%N) - $start" | bc) s after the vmm)" ;;
                guest-*) echo "   | $line" ;;
            esac
        done
    status=${PIPESTATUS[0]}
    echo "   vmm exited with $status after the guest's poweroff"
}

echo "== boot again, 4 vCPUs and 512 MiB: what the guest sees"
boot_report "$kernel"
echo "== the same kernel unpacked once by unpack-kernel: no decompression in the guest"
boot_report "$build/tests/guest/vmlinux"

echo "== a 64 MiB virtio disk: the guest makes an ext4 filesystem on /dev/vda and writes a file"
disk=$work/disk.raw
truncate -s 64M "$disk"
"$build/vmm/vmm" --kernel "$kernel" --initrd "$initrd" --cpus 2 --memory 256M \
    --cmdline "console=ttyS0 reboot=k panic=1 quiet guest.mode=disk" --disk "path=$disk" \
    --serial "file=$console" --api-socket "$socket" &
vmm=$!
wait_for "VIM-GUEST-DISK-DONE"
status=0; wait "$vmm" || status=$?
echo "   vmm exited with $status; on the host, e2fsck -fn says: $(e2fsck -fn "$disk" 2>&1 | tail -n 1)"
echo "   and /hello.txt in the image reads: $(debugfs -R 'cat /hello.txt' "$disk" 2>/dev/null)"
