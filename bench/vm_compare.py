#!/usr/bin/env python3
"""Side-by-side figures for our vmm and QEMU, measured in one run on the same
machine, kernel, initramfs and command line. Run it where /dev/kvm works
(tests/kvm-sandbox/kvm-run -- bench/vm_compare.py ...). Inside the nested
sandbox only the ratios mean something.

  boot-time: process start -> first line printed by the guest's /init
             (VIM-GUEST-READY), for the vmm and for qemu-system-x86_64
             -enable-kvm on microvm and q35 with the same memory and vCPUs.
  memory:    the vmm's resident memory minus the guest RAM it has touched,
             for a 1-vCPU 256 MiB guest sitting at its shell.
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


def vmm_command(build, initrd, cpus, memory_mib, mode):
    return [os.path.join(build, "vmm", "vmm"), "--kernel", kernel(), "--initrd", initrd,
            "--cpus", str(cpus), "--memory", f"{memory_mib}M",
            "--cmdline", f"{CMDLINE} guest.mode={mode}"]


def qemu_command(machine, initrd, cpus, memory_mib, mode):
    return ["qemu-system-x86_64", "-enable-kvm", "-cpu", "host", "-M", machine,
            "-smp", str(cpus), "-m", str(memory_mib), "-nodefaults", "-no-user-config",
            "-display", "none", "-serial", "stdio", "-no-reboot",
            "-kernel", kernel(), "-initrd", initrd,
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
    candidates = {
        "vmm": lambda: vmm_command(args.build, args.initrd, args.cpus, args.memory, "idle"),
        "qemu-microvm": lambda: qemu_command("microvm", args.initrd, args.cpus, args.memory, "idle"),
        "qemu-q35": lambda: qemu_command("q35", args.initrd, args.cpus, args.memory, "idle"),
    }
    times = {name: [] for name in candidates}
    for _ in range(args.runs):
        for name, command in candidates.items():  # interleaved, so drift hits all alike
            process, seconds = start_and_wait(command(), "VIM-GUEST-READY")
            stop(process)
            times[name].append(seconds)
    print(f"boot to /init's first line: {args.cpus} vCPU(s), {args.memory} MiB, {args.runs} runs each")
    medians = {name: statistics.median(values) for name, values in times.items()}
    fastest_qemu = min((name for name in medians if name.startswith("qemu")), key=medians.get)
    for name, values in times.items():
        print(f"  {name:13s} median {medians[name]:7.3f} s   min {min(values):7.3f} s   max {max(values):7.3f} s")
    print(f"  vmm / {fastest_qemu} = {medians['vmm'] / medians[fastest_qemu]:.2f}")


def status_fields(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0])
    return fields


def memory(args):
    rows = []
    for name, command in (
            ("vmm", vmm_command(args.build, args.initrd, 1, 256, "shell")),
            ("qemu-microvm", qemu_command("microvm", args.initrd, 1, 256, "shell"))):
        process, _ = start_and_wait(command, "VIM-GUEST-SHELL")
        time.sleep(2)  # let the shell settle at its prompt
        fields = status_fields(process.pid)
        stop(process)
        rows.append((name, fields))
    print("resident memory of a 1-vCPU 256 MiB guest at its shell (KiB)")
    for name, fields in rows:
        # Our guest RAM is a shared memfd: the pages the guest touched are RssShmem.
        # QEMU's RAM is anonymous, so its overhead cannot be split out the same way.
        overhead = fields["VmRSS"] - fields["RssShmem"]
        print(f"  {name:13s} VmRSS {fields['VmRSS']:7d}  RssAnon {fields['RssAnon']:7d}  "
              f"RssFile {fields['RssFile']:6d}  RssShmem {fields['RssShmem']:7d}"
              + (f"  overhead (VmRSS - RssShmem) {overhead} KiB = {overhead / 1024:.2f} MiB" if name == "vmm" else ""))


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
