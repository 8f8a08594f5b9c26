#!/usr/bin/env python3
"""Side-by-side figures for our vmm and QEMU, measured in one run on the same
machine, kernel, initramfs and command line. Run it where /dev/kvm works
(tests/kvm-sandbox/kvm-run -- bench/vm_compare.py ...). Inside the nested
sandbox only the ratios mean something.

  boot-time: process start -> first line printed by the guest's /init
             (VIM-GUEST-READY), for the vmm and for qemu-system-x86_64
             -enable-kvm on microvm and q35 with the same memory and vCPUs;
             each booting the distribution's bzImage and the same kernel
             unpacked to its ELF vmlinux (QEMU boots that through PVH).
  memory:    the resident memory of the vmm, and of QEMU microvm, minus the
             guest RAM touched, for a 1-vCPU 256 MiB guest at its shell.
"""
import argparse
import glob
import os
import select
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CMDLINE = "console=ttyS0 reboot=k panic=1 quiet"


def kernel():
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    if not kernels:
        sys.exit("no /boot/vmlinuz-* (apt-get install linux-image-amd64)")
    return kernels[-1]


def vmm_command(build, initrd, cpus, memory_mib, mode, kernel_path=None):
    return [os.path.join(build, "vmm", "vmm"), "--kernel", kernel_path or kernel(), "--initrd", initrd,
            "--cpus", str(cpus), "--memory", f"{memory_mib}M",
            "--cmdline", f"{CMDLINE} guest.mode={mode}"]


def qemu_command(machine, initrd, cpus, memory_mib, mode, kernel_path=None):
    return ["qemu-system-x86_64", "-enable-kvm", "-cpu", "host", "-M", machine,
            "-smp", str(cpus), "-m", str(memory_mib), "-nodefaults", "-no-user-config",
            "-display", "none", "-serial", "stdio", "-no-reboot",
            "-kernel", kernel_path or kernel(), "-initrd", initrd,
            "-append", f"{CMDLINE} guest.mode={mode}"]


def start_and_wait(command, marker, timeout=300):
    """Starts `command`; returns (process, seconds until a line holds `marker`)."""
    started = time.monotonic()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    seen = b""
    while marker.encode() not in seen:
        left = timeout - (time.monotonic() - started)
        ready, _, _ = select.select([process.stdout], [], [], max(left, 0))
        chunk = os.read(process.stdout.fileno(), 65536) if ready else b""
        if not chunk:
            process.kill()
            sys.exit(f"{command[0]} ended or timed out before '{marker}':\n{seen.decode(errors='replace')[-2000:]}")
        seen += chunk
    return process, time.monotonic() - started


def stop(process):
    process.kill()
    process.wait()


def boot_time(args):
    vmlinux = os.path.join(args.build, "tests", "guest", "vmlinux")
    if not os.path.exists(vmlinux):
        sys.exit(f"{vmlinux} is missing: build the guest_vmlinux target (unpack-kernel)")
    candidates = {
        "vmm": lambda: vmm_command(args.build, args.initrd, args.cpus, args.memory, "idle"),
        "vmm-vmlinux": lambda: vmm_command(args.build, args.initrd, args.cpus, args.memory, "idle", vmlinux),
        "qemu-microvm": lambda: qemu_command("microvm", args.initrd, args.cpus, args.memory, "idle"),
        "qemu-q35": lambda: qemu_command("q35", args.initrd, args.cpus, args.memory, "idle"),
        "qemu-microvm-pvh": lambda: qemu_command("microvm", args.initrd, args.cpus, args.memory, "idle", vmlinux),
        "qemu-q35-pvh": lambda: qemu_command("q35", args.initrd, args.cpus, args.memory, "idle", vmlinux),
    }
    times = {name: [] for name in candidates}
    for _ in range(args.runs):
        for name, command in candidates.items():  # interleaved, so drift hits all alike
            process, seconds = start_and_wait(command(), "VIM-GUEST-READY")
            stop(process)
            times[name].append(seconds)
            print(f"  run {len(times[name])} {name}: {seconds:.3f} s", flush=True)
    print(f"boot to /init's first line: {args.cpus} vCPU(s), {args.memory} MiB, {args.runs} runs each")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"  {name:17s} median {medians[name]:7.3f} s   min {min(values):7.3f} s   max {max(values):7.3f} s")

    def fastest(prefix, names=medians):
        return min((name for name in names if name.startswith(prefix)), key=medians.get)

    best_vmm, best_qemu = fastest("vmm"), fastest("qemu")
    print(f"  fastest: {best_vmm} / {best_qemu} = {medians[best_vmm] / medians[best_qemu]:.2f}")
    bzimage_qemu = fastest("qemu", [name for name in medians if not name.endswith("-pvh")])
    print(f"  bzImage alone: vmm / {bzimage_qemu} = {medians['vmm'] / medians[bzimage_qemu]:.2f}")


def resident_kib(pid, ram_mib):
    """(VmRSS, the resident part of the guest-RAM mapping) of process `pid`
    in KiB. Guest RAM is the private writable mapping of RAM's size (up to
    4 MiB of alignment more) with the most pages resident: for our vmm and for
    QEMU alike."""
    with open(f"/proc/{pid}/status") as status:
        vm_rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    ram_rss, size_kib, perms = 0, 0, ""
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 2 and len(fields[1]) == 4:  # a mapping's header line
                start, end = (int(part, 16) for part in fields[0].split("-"))
                size_kib, perms = (end - start) // 1024, fields[1]
            elif fields[0] == "Rss:" and perms.startswith("rw") and \
                    ram_mib * 1024 <= size_kib <= (ram_mib + 4) * 1024:
                ram_rss = max(ram_rss, int(fields[1]))
    return vm_rss, ram_rss


def memory(args):
    ram_mib = 256
    rows = []
    for name, command in (
            ("vmm", vmm_command(args.build, args.initrd, 1, ram_mib, "shell")),
            ("qemu-microvm", qemu_command("microvm", args.initrd, 1, ram_mib, "shell"))):
        process, _ = start_and_wait(command, "VIM-GUEST-SHELL")
        time.sleep(2)  # let the shell settle at its prompt
        rows.append((name, resident_kib(process.pid, ram_mib)))
        stop(process)
    print(f"resident memory of a 1-vCPU {ram_mib} MiB guest at its shell (KiB)")
    for name, (vm_rss, ram_rss) in rows:
        overhead = vm_rss - ram_rss
        print(f"  {name:13s} VmRSS {vm_rss:7d}  guest RAM resident {ram_rss:7d}  "
              f"overhead {overhead:6d} KiB = {overhead / 1024:.2f} MiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figure", choices=["boot-time", "memory"])
    parser.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--memory", type=int, default=512, help="MiB")
    args = parser.parse_args()
    args.initrd = os.path.join(args.build, "tests", "guest", "initramfs.cpio.gz")
    {"boot-time": boot_time, "memory": memory}[args.figure](args)


if __name__ == "__main__":
    main()
