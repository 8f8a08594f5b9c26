"""A small cloud on one machine, for the demo and the system benchmarks: a
controller (vimd) in a network namespace holding a bridge, and hosts, each a
network namespace with its own agent (hostd) and a veth uplink to that bridge
(its address untagged, its networks' VLANs tagged on it); a directory every
host sees plays the shared storage. Nothing leaves the namespaces it creates.
Needs root, and /dev/kvm for the guests (tests/kvm-sandbox/kvm-run gives one).

    with Cluster(build, hosts=2) as cluster:
        cluster.vimctl("vm", "list")
"""
import json
import os
import shutil
import subprocess
import tempfile
import time

CONTROLLER_ADDRESS, CONTROLLER_PORT, AGENT_PORT = "10.77.0.1", 8470, 8471
GUEST_CMDLINE = "console=ttyS0 quiet guest.mode=service"


def host_name(index):
    return f"h{index + 1}"


def host_address(index):
    return f"10.77.0.{11 + index}"


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not within {timeout} s")


class Cluster:
    def __init__(self, build, hosts=2, heartbeat_ms=500):
        self.build = build
        self.work = tempfile.mkdtemp(prefix="vim-cluster.")
        self.prefix = f"vimc{os.getpid() % 100000}"
        self.controller_ns = f"{self.prefix}-ctl"
        self.url = f"http://{CONTROLLER_ADDRESS}:{CONTROLLER_PORT}"
        self.hosts = [host_name(index) for index in range(hosts)]
        self.heartbeat_ms = heartbeat_ms
        self.processes = []

    def __enter__(self):
        try:
            self._network()
            self._start_vimd()
            for index in range(len(self.hosts)):
                self._start_hostd(index)
            wait_until(lambda: len(self.vimctl_json("host", "list")["items"]) == len(self.hosts), 60,
                       "the hosts registering")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exception):
        # The VMs' vmm processes outlive their hostd by design: end everything in the namespaces.
        for namespace in [self.namespace(host) for host in self.hosts] + [self.controller_ns]:
            pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout
            for pid in pids.split():
                subprocess.run(["kill", "-9", pid], stderr=subprocess.DEVNULL)
        for process in self.processes:
            process.wait()
        time.sleep(0.2)
        for namespace in [self.namespace(host) for host in self.hosts] + [self.controller_ns]:
            subprocess.run(["ip", "netns", "delete", namespace], stderr=subprocess.DEVNULL)
        shutil.rmtree(self.work, ignore_errors=True)

    def namespace(self, host):
        return f"{self.prefix}-{host}"

    def shared_dir(self):
        return os.path.join(self.work, "shared")

    def state_dir(self, host):
        return os.path.join(self.work, host)

    def _network(self):
        ns = self.controller_ns
        commands = [["ip", "netns", "add", ns], ["ip", "-n", ns, "link", "set", "lo", "up"],
                    ["ip", "-n", ns, "link", "add", "br0", "type", "bridge"],
                    ["ip", "-n", ns, "addr", "add", f"{CONTROLLER_ADDRESS}/24", "dev", "br0"],
                    ["ip", "-n", ns, "link", "set", "br0", "up"]]
        for index, host in enumerate(self.hosts):
            host_ns = self.namespace(host)
            commands += [["ip", "netns", "add", host_ns], ["ip", "-n", host_ns, "link", "set", "lo", "up"],
                         ["ip", "-n", ns, "link", "add", f"p{host}", "type", "veth", "peer", "name", "uplink",
                          "netns", host_ns],
                         ["ip", "-n", ns, "link", "set", f"p{host}", "master", "br0", "up"],
                         ["ip", "-n", host_ns, "addr", "add", f"{host_address(index)}/24", "dev", "uplink"],
                         ["ip", "-n", host_ns, "link", "set", "uplink", "up"]]
        for command in commands:
            subprocess.run(command, check=True)
        os.makedirs(self.shared_dir())

    def _spawn(self, namespace, command, log):
        process = subprocess.Popen(["ip", "netns", "exec", namespace] + command, stdin=subprocess.DEVNULL,
                                   stdout=open(log, "w"), stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def _start_vimd(self):
        os.makedirs(os.path.join(self.work, "vimd"))
        self._spawn(self.controller_ns,
                    [os.path.join(self.build, "controller/vimd/vimd"), "--listen",
                     f"{CONTROLLER_ADDRESS}:{CONTROLLER_PORT}", "--state-dir", os.path.join(self.work, "vimd"),
                     "--advertise-url", self.url],
                    os.path.join(self.work, "vimd.log"))
        wait_until(lambda: self.vimctl("host", "list", check=False).returncode == 0, 30, "vimd answering")

    def _start_hostd(self, index):
        host = self.hosts[index]
        os.makedirs(self.state_dir(host), exist_ok=True)
        self._spawn(self.namespace(host),
                    [os.path.join(self.build, "controller/hostd/hostd"), "--controller", self.url,
                     "--listen", f"{host_address(index)}:{AGENT_PORT}", "--name", host,
                     "--state-dir", self.state_dir(host), "--disk-dir", self.shared_dir(), "--uplink", "uplink",
                     "--guest-kernel", os.path.join(self.build, "tests/guest/vmlinux"),
                     "--guest-initrd", os.path.join(self.build, "tests/guest/initramfs.cpio.gz"),
                     "--guest-cmdline", GUEST_CMDLINE, "--heartbeat-ms", str(self.heartbeat_ms)],
                    os.path.join(self.work, f"{host}.log"))

    def vimctl(self, *arguments, check=True):
        """vimctl with these arguments in the controller's namespace; its completed process."""
        result = subprocess.run(["ip", "netns", "exec", self.controller_ns,
                                 os.path.join(self.build, "controller/vimctl/vimctl"), "--controller", self.url,
                                 *arguments], capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"vimctl {' '.join(arguments)}: {result.stderr.strip()}")
        return result

    def vimctl_json(self, *arguments):
        return json.loads(self.vimctl("--json", *arguments).stdout or "{}")

    def console_path(self, vm):
        """The serial log of a VM on the host that runs it now."""
        shown = self.vimctl_json("vm", "show", vm)
        return os.path.join(self.state_dir(shown["host"]), "vms", shown["id"], "console.log")

    def console_lines(self, vm, pattern):
        try:
            with open(self.console_path(vm), errors="replace") as console:
                return [line.rstrip("\n") for line in console if pattern in line]
        except FileNotFoundError:
            return []

    def wait_console(self, vm, pattern, timeout=300):
        """The first console line of `vm` that contains pattern."""
        return wait_until(lambda: (self.console_lines(vm, pattern) or [None])[0], timeout,
                          f"{vm} printing {pattern!r}")
