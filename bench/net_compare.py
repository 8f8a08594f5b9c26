#!/usr/bin/env python3
"""Network figures for our vmm's virtio-net and QEMU's, measured in one run on
the same machine, kernel, initramfs and network set-up. Run it where /dev/kvm
works, as root (tests/kvm-sandbox/kvm-run -- bench/net_compare.py); inside the
nested sandbox only the ratios mean something.

Each VMM's guest gets one NIC on a tap attached to a bridge that carries the
host's address, all in a network namespace of this script's own (nothing
leaves it): our vmm with --net tap=...,bridge=...; QEMU q35 with
virtio-net-pci on a tap, vhost=off (its own user-space device model, like
ours) and vhost=on (the kernel's vhost-net, for reference). The same program,
tests/guest/programs/netblast.c, runs at both ends:

  host->guest, guest->host: TCP throughput of one stream (netblast send/recv
                            from the host to the guest's netblast serve)
  ping:                     round-trip time of ICMP echo from the host

  tests/kvm-sandbox/kvm-run -- bench/net_compare.py --runs 3
  tests/kvm-sandbox/kvm-run -- bench/net_compare.py --quick    # CI smoke run
"""
import argparse
import ctypes
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vm_compare import ROOT, qemu_command, start_and_wait, vmm_command  # noqa: E402

HOST_ADDRESS, GUEST_ADDRESS, PORT = "10.0.0.1", "10.0.0.2", 5201
CLONE_NEWNET = 0x40000000


def enter_private_network():
    """Moves this process (and what it starts) into a new network namespace
    with its loopback up and a bridge br0 that holds the host's address."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        sys.exit(f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())} (run as root)")
    for command in (["ip", "link", "set", "lo", "up"],
                    ["ip", "link", "add", "br0", "type", "bridge"],
                    ["ip", "address", "add", f"{HOST_ADDRESS}/24", "dev", "br0"],
                    ["ip", "link", "set", "br0", "up"]):
        subprocess.run(command, check=True)


def candidates(args):
    """name -> the command that starts that VMM's guest, with its NIC on a tap."""
    guest = (args.initrd, args.cpus, args.memory, "shell")

    def with_address(command):
        # The guest's address goes on its kernel command line, read by /init.
        index = command.index("--cmdline" if "--cmdline" in command else "-append") + 1
        command[index] += f" guest.ip={GUEST_ADDRESS}/24"
        return command

    def qemu(vhost):
        return with_address(qemu_command("q35", *guest) + [
            "-netdev", f"tap,id=net0,ifname=tapq,script=no,downscript=no,vhost={vhost}",
            "-device", "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:02"])

    result = {"vmm": lambda: with_address(vmm_command(args.build, *guest) + [
        "--net", "tap=tapv,bridge=br0,mac=52:54:00:00:00:02"])}
    result["qemu vhost=off"] = lambda: qemu("off")
    subprocess.run(["modprobe", "vhost_net"], stderr=subprocess.DEVNULL)
    if os.path.exists("/dev/vhost-net"):
        result["qemu vhost=on"] = lambda: qemu("on")
    return result


def throughput(netblast, direction, megabytes):
    """Mbit/s of one netblast transfer from the host; exits if the data did not arrive intact."""
    result = subprocess.run([netblast, direction, GUEST_ADDRESS, str(PORT), str(megabytes << 20)],
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or " ok" not in result.stdout:
        sys.exit(f"netblast {direction}: {result.stdout}{result.stderr}")
    return float(re.search(r"([\d.]+) Mbit/s", result.stdout).group(1))


def ping_ms(count):
    """The average round-trip time of `count` pings from the host."""
    result = subprocess.run(["busybox", "ping", "-c", str(count), "-i", "0.2", "-W", "5", GUEST_ADDRESS],
                            capture_output=True, text=True, timeout=120)
    match = re.search(r"min/avg/max = [\d.]+/([\d.]+)/", result.stdout)
    if result.returncode != 0 or not match:
        sys.exit(f"ping {GUEST_ADDRESS}: {result.stdout}{result.stderr}")
    return float(match.group(1))


def measure(name, command, args):
    console, _ = start_and_wait(command, "VIM-GUEST-SHELL", interactive=True)
    try:
        if name.startswith("qemu"):
            # QEMU makes the tap; it joins the bridge here, as a host agent would do.
            subprocess.run(["ip", "link", "set", "tapq", "master", "br0", "up"], check=True)
        console.type(f"netblast serve {PORT} &\n")
        console.wait_for("netblast: serving", timeout=60)
        ping_ms(2)  # the bridge learns the guest's MAC; ARP settles
        return {"host->guest": throughput(args.netblast, "send", args.megabytes),
                "guest->host": throughput(args.netblast, "recv", args.megabytes),
                "ping": ping_ms(args.pings)}
    finally:
        console.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--memory", type=int, default=512, help="MiB")
    parser.add_argument("--megabytes", type=int, default=256, help="MiB per transfer")
    parser.add_argument("--pings", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="a smoke run for CI: 1 run, 16 MiB, 5 pings")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.megabytes, args.pings = 1, 16, 5
    args.initrd = os.path.join(args.build, "tests", "guest", "initramfs.cpio.gz")
    args.netblast = os.path.join(args.build, "tests", "guest", "netblast")
    enter_private_network()

    vmms = candidates(args)
    results = {name: [] for name in vmms}
    for run in range(args.runs):
        # The VMMs take turns, in the reverse order every other run, so drift hits all alike.
        for name in list(vmms)[::1 if run % 2 == 0 else -1]:
            results[name].append(measure(name, vmms[name](), args))
            figures = results[name][-1]
            print(f"  run {run + 1} {name}: host->guest {figures['host->guest']:.0f} Mbit/s, "
                  f"guest->host {figures['guest->host']:.0f} Mbit/s, ping {figures['ping']:.3f} ms", flush=True)

    print(f"net: one TCP stream of {args.megabytes} MiB each way (netblast at both ends, checksummed) and "
          f"{args.pings} pings, host <-> a {args.cpus}-vCPU {args.memory} MiB guest through a tap on a bridge; "
          f"{args.runs} run(s), medians")
    names = list(vmms)
    print("  figure          " + "".join(f"{name:>16s}" for name in names) + "   vmm/qemu vhost=off  target")
    for figure, unit in (("host->guest", "Mbit/s"), ("guest->host", "Mbit/s"), ("ping", "ms")):
        medians = {name: statistics.median(run[figure] for run in results[name]) for name in names}
        ratio = statistics.median(ours[figure] / theirs[figure]
                                  for ours, theirs in zip(results["vmm"], results["qemu vhost=off"]))
        # Throughput: more is better; ping: less is.
        met = ratio >= 1.0 if unit == "Mbit/s" else ratio <= 1.0
        print(f"  {figure + ' (' + unit + ')':16s}" + "".join(f"{medians[name]:16.3f}" for name in names) +
              f"   {ratio:18.2f}  {'met' if met else 'MISSED'}")
    if "qemu vhost=on" not in vmms:
        print("  (no /dev/vhost-net: modprobe vhost_net for QEMU's vhost=on reference)")
    print("  target (the issue): throughput at least QEMU vhost=off's; vhost=on is reported for reference")


if __name__ == "__main__":
    main()
