#!/usr/bin/env bash
# Copies the small sysfs and procfs files hwprobe reads into DIR/{sys,proc}, so a
# host's inventory can be replayed in the unit tests:
#   tests/unit/hwprobe/capture-fixture.sh tests/unit/hwprobe/fixtures/<name>
# Only text files of a few bytes are copied; links to IOMMU groups and drivers
# are recreated pointing at the same names.
set -euo pipefail

target=${1:?usage: capture-fixture.sh DIR}
sys=${SYSFS_ROOT:-/sys}
proc=${PROCFS_ROOT:-/proc}

copy() {  # copy ROOT RELATIVE-PATH: skipped when absent or unreadable
    local root=$1 relative=$2 destination
    [[ $root == "$sys" ]] && destination=$target/sys/$relative || destination=$target/proc/$relative
    if [[ -r $root/$relative && -f $root/$relative ]]; then
        mkdir -p "$(dirname "$destination")"
        cat "$root/$relative" > "$destination" 2>/dev/null || rm -f "$destination"
    fi
}

link() {  # link RELATIVE-PATH: the same target name, as hwprobe reads only its last component
    local relative=$1
    if [[ -L $sys/$relative ]]; then
        mkdir -p "$(dirname "$target/sys/$relative")"
        ln -sfn "../../../$(basename "$(dirname "$(readlink "$sys/$relative")")")/$(basename "$(readlink "$sys/$relative")")" \
            "$target/sys/$relative"
    fi
}

for file in meminfo cpuinfo sys/kernel/osrelease sys/kernel/hostname sys/vm/overcommit_memory \
    sys/vm/overcommit_ratio sys/vm/overcommit_kbytes sys/kernel/io_uring_disabled sys/vm/unprivileged_userfaultfd; do
    copy "$proc" "$file"
done

copy "$sys" devices/system/cpu/online
for cpu in "$sys"/devices/system/cpu/cpu[0-9]*; do
    name=devices/system/cpu/$(basename "$cpu")
    copy "$sys" "$name/topology/physical_package_id"
    copy "$sys" "$name/topology/core_id"
done
for node in "$sys"/devices/system/node/node[0-9]*; do
    name=devices/system/node/$(basename "$node")
    for file in cpulist meminfo distance; do copy "$sys" "$name/$file"; done
    for pool in "$node"/hugepages/hugepages-*; do
        [[ -d $pool ]] || continue
        for file in nr_hugepages free_hugepages; do copy "$sys" "$name/hugepages/$(basename "$pool")/$file"; done
    done
done
for pool in "$sys"/kernel/mm/hugepages/hugepages-*; do
    for file in nr_hugepages free_hugepages; do copy "$sys" "kernel/mm/hugepages/$(basename "$pool")/$file"; done
done
for file in run pages_shared pages_sharing; do copy "$sys" "kernel/mm/ksm/$file"; done
for disk in "$sys"/block/*; do
    name=block/$(basename "$disk")
    for file in size queue/logical_block_size queue/physical_block_size queue/rotational device/model; do
        copy "$sys" "$name/$file"
    done
done
for device in "$sys"/bus/pci/devices/*; do
    name=bus/pci/devices/$(basename "$device")
    for file in class vendor device; do copy "$sys" "$name/$file"; done
    link "$name/iommu_group"
    link "$name/driver"
done
