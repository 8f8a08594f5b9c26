#!/usr/bin/env python3
"""What the controller and its host agents cost a user, measured in one run on
a small cloud on this machine (bench/cluster.py: vimd and two hosts, each a
network namespace with its own hostd). Run it where /dev/kvm works, as root
(tests/kvm-sandbox/kvm-run -- bench/cluster_compare.py); inside the nested
sandbox only the differences between the two columns mean something.

  provisioning: from `vimctl vm create` to the guest's first console line
                (VIM-GUEST-READY, printed by its /init), against the same vmm
                command line (read from the process hostd started) started by
                hand in the same host's namespace: the controller's and the
                agent's added latency.
  evacuation:   a host running N VMs (each rewriting 16 MiB) put into
                maintenance: the time until it is empty, and each VM's
                downtime in its live migration.

  tests/kvm-sandbox/kvm-run -- bench/cluster_compare.py --runs 5 --vms 4
  tests/kvm-sandbox/kvm-run -- bench/cluster_compare.py --quick    # CI smoke run
"""
import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster  # noqa: E402

CLONE_NEWNET = 0x40000000
READY = "VIM-GUEST-READY"


def wait_for_line(path, marker, timeout=300):
    """Polls a console file every 2 ms; the monotonic time the marker appeared."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, errors="replace") as console:
                if marker in console.read():
                    return time.monotonic()
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    raise RuntimeError(f"{path}: no {marker!r} within {timeout} s")


def in_namespace(namespace):
    """A preexec_fn that moves the child into a named network namespace (what hostd's children inherit)."""
    def enter():
        libc = ctypes.CDLL(None, use_errno=True)
        with open(f"/run/netns/{namespace}") as handle:
            if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
    return enter


def vmm_command_of(cluster, host, vm_id):
    """The command line hostd started a VM's vmm with."""
    for pid in subprocess.run(["ip", "netns", "pids", cluster.namespace(host)], capture_output=True,
                              text=True).stdout.split():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                arguments = [part.decode() for part in cmdline.read().split(b"\0") if part]
        except FileNotFoundError:
            continue
        if arguments and arguments[0].endswith("/vmm") and any(vm_id in part for part in arguments):
            return arguments
    raise RuntimeError(f"no vmm of {vm_id} on {host}")


def relocated(command, directory):
    """The command with its control socket, console and copies of its disks in directory (deleting
    the VM deletes its own disks)."""
    result = list(command)
    for flag, value in (("--api-socket", os.path.join(directory, "api.sock")),
                        ("--serial", "file=" + os.path.join(directory, "console.log"))):
        result[result.index(flag) + 1] = value
    for index, argument in enumerate(result):
        if index > 0 and result[index - 1] == "--disk" and argument.startswith("path="):
            path, _, options = argument[len("path="):].partition(",")
            copy = os.path.join(directory, os.path.basename(path))
            shutil.copyfile(path, copy)
            result[index] = f"path={copy}" + (f",{options}" if options else "")
    return result


def provisioning(cluster, runs):
    managed, by_hand = [], []
    for run in range(runs):
        name = f"prov-{run}"
        started = time.monotonic()
        created = json.loads(cluster.vimctl("--json", "vm", "create", name, "--vcpus", "1", "--memory-mib", "128",
                                            "--image", "base", "--nic", "blue", "--host-affinity", "h1").stdout)
        vm_id = created["vm"]["id"] if "vm" in created else created["id"]
        console = os.path.join(cluster.state_dir("h1"), "vms", vm_id, "console.log")
        managed.append(wait_for_line(console, READY) - started)
        directory = os.path.join(cluster.work, f"by-hand-{run}")
        os.makedirs(directory)
        command = relocated(vmm_command_of(cluster, "h1", vm_id), directory)
        cluster.vimctl("vm", "delete", name, "--wait")
        started = time.monotonic()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   preexec_fn=in_namespace(cluster.namespace("h1")))
        by_hand.append(wait_for_line(os.path.join(directory, "console.log"), READY) - started)
        process.kill()
        process.wait()
    return managed, by_hand


def evacuation(cluster, vms):
    cluster.vimctl("host", "disable", "h2")
    for index in range(vms):
        cluster.vimctl("vm", "create", f"evac-{index}", "--vcpus", "1", "--memory-mib", "128", "--image", "base",
                       "--nic", "blue", "--wait")
    for index in range(vms):
        cluster.wait_console(f"evac-{index}", "dirtier count 5 ")
    cluster.vimctl("host", "enable", "h2")
    started = time.monotonic()
    result = cluster.vimctl("--json", "host", "maintenance", "h1", "on", "--wait")
    took = time.monotonic() - started
    operation = json.loads(result.stdout)
    left = cluster.vimctl_json("vm", "list", "--host", "h1")["items"]
    if left:
        raise RuntimeError(f"h1 still holds {[vm['name'] for vm in left]}")
    return took, operation


def spread(values):
    return f"{statistics.median(values) * 1000:8.1f} ms (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "build/release"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--vms", type=int, default=4, help="VMs on the evacuated host")
    parser.add_argument("--quick", action="store_true", help="one run, two VMs: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.vms = 1, 2
    with Cluster(args.build, hosts=2) as cluster:
        image = os.path.join(cluster.work, "base.raw")
        with open(image, "wb") as out:
            out.truncate(8 << 20)
        cluster.vimctl("image", "upload", image, "--name", "base")
        cluster.vimctl("network", "create", "blue", "--vlan", "100", "--cidr", "10.100.0.0/24")

        managed, by_hand = provisioning(cluster, args.runs)
        print(f"provisioning, create -> the guest's first line, {args.runs} runs (median, min, max):")
        print(f"  vimctl vm create (vimd, hostd, vmm)  {spread(managed)}")
        print(f"  vmm started by hand                 {spread(by_hand)}")
        print(f"  added by the controller and agent   "
              f"{(statistics.median(managed) - statistics.median(by_hand)) * 1000:8.1f} ms")

        took, operation = evacuation(cluster, args.vms)
        print(f"evacuation of a host with {args.vms} running VMs: empty after {took:.2f} s")
        for moved in operation.get("result", {}).get("vms", []):
            print(f"  {moved.get('name', moved.get('vm_id'))}: {moved.get('from')} -> {moved.get('to')}, "
                  f"downtime {moved.get('downtime_ms', '?')} ms, migration {moved.get('total_ms', '?')} ms")


if __name__ == "__main__":
    main()
