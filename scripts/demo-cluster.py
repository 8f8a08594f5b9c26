#!/usr/bin/env python3
"""The demo's system part; runs where /dev/kvm works (scripts/demo.sh puts it
there). One controller (vimd) and two hosts, each a network namespace with
its own agent (hostd); a directory both hosts see plays the shared storage
(bench/cluster.py). Through vimctl only: an image, a network, two VMs, a live
migration, and a host evacuated for maintenance; it prints each step."""
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from cluster import Cluster  # noqa: E402


def step(text):
    print(f"== {text}", flush=True)


def show(cluster, *arguments):
    print(cluster.vimctl(*arguments).stdout, end="", flush=True)


def last_count(cluster, vm):
    lines = cluster.console_lines(vm, "dirtier count")
    return int(re.search(r"dirtier count (\d+)", lines[-1]).group(1)) if lines else -1


def main():
    build = os.path.join(ROOT, "build/release")
    step("vimd, and two hosts (network namespaces on a bridge) whose hostd register with their inventory")
    with Cluster(build, hosts=2) as cluster:
        show(cluster, "host", "list")
        step("image upload (a raw disk image); network create blue (VLAN 100, 10.100.0.0/24)")
        image = os.path.join(cluster.work, "base.raw")
        with open(image, "wb") as out:
            out.truncate(8 << 20)
        show(cluster, "image", "upload", image, "--name", "base")
        show(cluster, "network", "create", "blue", "--vlan", "100", "--cidr", "10.100.0.0/24")
        step("vm create web-1, web-2 on blue: the guests rewrite 16 MiB and print a counter")
        for vm in ("web-1", "web-2"):
            started = time.monotonic()
            cluster.vimctl("vm", "create", vm, "--vcpus", "1", "--memory-mib", "128", "--image", "base",
                           "--nic", "blue", "--wait")
            cluster.wait_console(vm, "VIM-GUEST-READY")
            print(f"{vm}: vimctl vm create -> the guest's first line in {time.monotonic() - started:.2f} s")
        show(cluster, "vm", "list")
        cluster.wait_console("web-2", "VIM-NEIGHBOURS 10.100.0")
        print("web-2 reaches on blue:", cluster.console_lines("web-2", "VIM-NEIGHBOURS")[-1])

        source = cluster.vimctl_json("vm", "show", "web-1")["host"]
        target = "h2" if source == "h1" else "h1"
        before = last_count(cluster, "web-1")
        step(f"vm migrate web-1 from {source} to {target}, live (the guest was at count {before})")
        show(cluster, "vm", "migrate", "web-1", "--host", target, "--wait")
        show(cluster, "vm", "list")
        cluster.wait_console("web-1", f"dirtier count {before + 20} ")
        print(f"web-1 counts on at {target}:", cluster.console_lines("web-1", "dirtier count")[-1])

        step(f"host maintenance {target} on: its VMs move to the other host, live, none stops")
        show(cluster, "host", "maintenance", target, "on", "--wait")
        show(cluster, "vm", "list")
        show(cluster, "host", "list")
        cluster.vimctl("host", "maintenance", target, "off")
        print(f"{target} is back in service")
        step("operation list")
        show(cluster, "operation", "list")


if __name__ == "__main__":
    main()
