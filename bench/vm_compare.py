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
  disk:      guest-side IOPS and throughput (tests/guest/programs/blkbench.c:
             Linux AIO, O_DIRECT on /dev/vda) on our virtio-blk and on QEMU
             q35's virtio-blk-pci with aio=io_uring, on the same raw image,
             with the user-space exits per request of each (see disk()).
  density:   the resident memory per guest of N idle guests that touched
             half their RAM and freed it: ours with free page reporting (and
             without), QEMU q35 with virtio-balloon-pci free-page-reporting=on.

--disks N attaches N raw images and an entropy device to every VMM in
boot-time and memory (the vmm always has virtio-rng; QEMU gets a
virtio-rng-pci beside virtio-blk-pci, and microvm its PCIe host, pcie=on, so
that both have the same devices on the same transport). Boot time ends at
/init's first line, before the guest loads its virtio drivers: it counts the
VMM's device set-up and the kernel's PCI scan, not the drivers' probing.

Images (disk, --disks) live in --image-dir, default /tmp: in the KVM sandbox
a tmpfs, so the figure measures the VMMs' paths, not a disk. A filesystem
that takes O_DIRECT gets it in both VMMs (--disk ...,direct=on and
cache=none); tmpfs before Linux 6.6 does not, and then both use the host's
page cache (cache=writeback). The table says which.

  tests/kvm-sandbox/kvm-run -- bench/vm_compare.py boot-time --runs 5 --disks 2
  tests/kvm-sandbox/kvm-run -- bench/vm_compare.py memory --disks 2
  tests/kvm-sandbox/kvm-run -- bench/vm_compare.py disk --runs 3
  tests/kvm-sandbox/kvm-run -- bench/vm_compare.py disk --quick    # CI smoke run
  tests/kvm-sandbox/kvm-run -- bench/vm_compare.py density --guests 4
"""
import argparse
import glob
import json
import os
import re
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CMDLINE = "console=ttyS0 reboot=k panic=1 quiet"


def kernel():
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    if not kernels:
        sys.exit("no /boot/vmlinuz-* (apt-get install linux-image-amd64)")
    return kernels[-1]


def vmm_command(build, initrd, cpus, memory_mib, mode, kernel_path=None, disks=None, api_socket=None):
    command = [os.path.join(build, "vmm", "vmm"), "--kernel", kernel_path or kernel(), "--initrd", initrd,
               "--cpus", str(cpus), "--memory", f"{memory_mib}M",
               "--cmdline", f"{CMDLINE} guest.mode={mode}"]
    if disks:
        command += disks.vmm_options()
    if api_socket:
        command += ["--api-socket", api_socket]
    return command


def qemu_command(machine, initrd, cpus, memory_mib, mode, kernel_path=None, disks=None, qmp_socket=None):
    if disks and machine == "microvm":
        machine = "microvm,pcie=on"  # virtio-blk-pci and virtio-rng-pci need a PCI host
    command = ["qemu-system-x86_64", "-enable-kvm", "-cpu", "host", "-M", machine,
               "-smp", str(cpus), "-m", str(memory_mib), "-nodefaults", "-no-user-config",
               "-display", "none", "-serial", "stdio", "-no-reboot",
               "-kernel", kernel_path or kernel(), "-initrd", initrd,
               "-append", f"{CMDLINE} guest.mode={mode}"]
    if disks:
        command += disks.qemu_options()
    if qmp_socket:
        command += ["-qmp", f"unix:{qmp_socket},server=on,wait=off"]
    return command


class Console:
    """A VMM process whose serial console is its standard output (and, if
    `interactive`, its standard input). Lines are matched in order: a marker
    is looked for only after the line the last match ended."""

    def __init__(self, command, interactive=False):
        self.command = command
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.seen = b""
        self.position = 0

    def wait_for(self, marker, timeout=300, whole_line=False):
        """The first complete line from here on that holds `marker` (or is
        `marker`, with `whole_line`), less its line end."""
        deadline = time.monotonic() + timeout
        while True:
            while (end := self.seen.find(b"\n", self.position)) >= 0:
                line = self.seen[self.position:end].decode(errors="replace").strip()
                self.position = end + 1
                if line == marker or (not whole_line and marker in line):
                    return line
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(left, 0))
            chunk = os.read(self.process.stdout.fileno(), 65536) if ready else b""
            if not chunk:
                self.stop()
                sys.exit(f"{self.command[0]} ended or timed out before '{marker}':\n"
                         f"{self.seen.decode(errors='replace')[-2000:]}")
            self.seen += chunk

    def type(self, text):
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def stop(self):
        self.process.kill()
        self.process.wait()


def start_and_wait(command, marker, timeout=300, interactive=False):
    """Starts `command`; returns (its Console, seconds until a line holds `marker`)."""
    console = Console(command, interactive)
    console.wait_for(marker, timeout)
    return console, time.monotonic() - console.started


def filesystem_of(path):
    """The type of the filesystem that holds `path`, from /proc/mounts."""
    path, best, kind = os.path.realpath(path), "", "unknown"
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _, mount_point, fs_type = line.split()[:3]
            if (path == mount_point or path.startswith(mount_point.rstrip("/") + "/")) and \
                    len(mount_point) >= len(best):
                best, kind = mount_point, fs_type
    return kind


class Disks:
    """`count` raw images of `size_mib` in a new folder under `directory`,
    attached to both VMMs alike: virtio-blk on PCI with an io_uring back end
    (QEMU: aio=io_uring), and an entropy device. O_DIRECT on the host in both
    (direct=on, cache=none) where the filesystem takes it, else both through
    the page cache (cache=writeback). `fill` writes data, so that reads cost
    what real reads do; otherwise the images are sparse. Removed on exit."""

    def __init__(self, directory, count, size_mib, fill):
        self.folder = tempfile.mkdtemp(prefix="vm-compare-disks-", dir=directory)
        self.images = [os.path.join(self.folder, f"disk{index}.raw") for index in range(count)]
        # Random bytes, 1 MiB of them over and over: nothing on the way
        # treats zeros or holes specially, and writing stays quick.
        chunk = os.urandom(1 << 20)
        for image in self.images:
            with open(image, "wb") as out:
                if fill:
                    for _ in range(size_mib):
                        out.write(chunk)
                out.truncate(size_mib << 20)
        self.direct = bool(self.images) and self._takes_direct(self.images[0])

    @staticmethod
    def _takes_direct(path):
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_DIRECT))
            return True
        except OSError:
            return False

    def __enter__(self):
        return self

    def __exit__(self, *_):
        shutil.rmtree(self.folder, ignore_errors=True)

    def __bool__(self):
        return bool(self.images)

    def describe(self):
        folder = os.path.dirname(self.folder)
        cache = "O_DIRECT (direct=on / cache=none)" if self.direct else \
            "host page cache (no O_DIRECT there; cache=writeback)"
        return f"{len(self.images)} raw image(s) in {folder} ({filesystem_of(folder)}), {cache}"

    def vmm_options(self):
        suffix = ",direct=on" if self.direct else ""
        return [option for image in self.images for option in ("--disk", f"path={image}{suffix}")]

    def qemu_options(self):
        cache = "none" if self.direct else "writeback"
        options = []
        for index, image in enumerate(self.images):
            options += ["-drive", f"file={image},if=none,id=disk{index},format=raw,aio=io_uring,cache={cache}",
                        "-device", f"virtio-blk-pci,drive=disk{index}"]
        return options + ["-device", "virtio-rng-pci"] if options else []


def guest_value(console, name, expression):
    """What the guest's shell makes of `expression`, as a string."""
    # printf builds the marker, so the echo of the typed line never matches it.
    console.type(f"printf 'VIM-%s=%s\\n' {name} \"{expression}\"\n")
    return console.wait_for(f"VIM-{name}=").split("=", 1)[1]


def guest_disk_count(console):
    """The virtio disks the guest's shell sees in /sys/block."""
    return int(guest_value(console, "DISKS", "$(ls /sys/block | grep -c '^vd')"))


def boot_time(args):
    vmlinux = os.path.join(args.build, "tests", "guest", "vmlinux")
    if not os.path.exists(vmlinux):
        sys.exit(f"{vmlinux} is missing: build the guest_vmlinux target (unpack-kernel)")
    with Disks(args.image_dir, args.disks, 64, fill=False) as disks:
        guest = (args.initrd, args.cpus, args.memory, "idle")
        candidates = {
            "vmm": lambda: vmm_command(args.build, *guest, disks=disks),
            "vmm-vmlinux": lambda: vmm_command(args.build, *guest, vmlinux, disks=disks),
            "qemu-microvm": lambda: qemu_command("microvm", *guest, disks=disks),
            "qemu-q35": lambda: qemu_command("q35", *guest, disks=disks),
            "qemu-microvm-pvh": lambda: qemu_command("microvm", *guest, vmlinux, disks=disks),
            "qemu-q35-pvh": lambda: qemu_command("q35", *guest, vmlinux, disks=disks),
        }
        times = {name: [] for name in candidates}
        for _ in range(args.runs):
            for name, command in candidates.items():  # interleaved, so drift hits all alike
                console, seconds = start_and_wait(command(), "VIM-GUEST-READY")
                console.stop()
                times[name].append(seconds)
                print(f"  run {len(times[name])} {name}: {seconds:.3f} s", flush=True)
        devices = f", {disks.describe()}, virtio-rng" if disks else ""
    print(f"boot to /init's first line: {args.cpus} vCPU(s), {args.memory} MiB{devices}, {args.runs} runs each")
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
    with Disks(args.image_dir, args.disks, 64, fill=False) as disks:
        for name, command in (
                ("vmm", vmm_command(args.build, args.initrd, 1, ram_mib, "shell", disks=disks)),
                ("qemu-microvm", qemu_command("microvm", args.initrd, 1, ram_mib, "shell", disks=disks))):
            console, _ = start_and_wait(command, "VIM-GUEST-SHELL", interactive=True)
            time.sleep(2)  # let the shell settle at its prompt
            rows.append((name, resident_kib(console.process.pid, ram_mib)))
            # Afterwards, so that the check costs the figure nothing: a disk
            # the guest's driver never took would make the overhead look small.
            seen = guest_disk_count(console) if disks else 0
            console.stop()
            if seen != len(disks.images):
                sys.exit(f"{name}: the guest sees {seen} virtio disk(s), not {len(disks.images)}")
        devices = f", {disks.describe()}, virtio-rng" if disks else ""
    print(f"resident memory of a 1-vCPU {ram_mib} MiB guest at its shell{devices} (KiB)")
    for name, (vm_rss, ram_rss) in rows:
        overhead = vm_rss - ram_rss
        print(f"  {name:13s} VmRSS {vm_rss:7d}  guest RAM resident {ram_rss:7d}  "
              f"overhead {overhead:6d} KiB = {overhead / 1024:.2f} MiB")


def density(args):
    """Memory a host keeps for idle guests that have used memory and freed it:
    each guest touches half its RAM (memtouch), frees it, and sits at its
    shell; the VMMs' free page reporting hands the freed pages back. N guests
    of each kind side by side; their VmRSS per guest."""
    ram_mib, touched_mib = args.memory, args.memory // 2
    kinds = (
        ("vmm", lambda: vmm_command(args.build, args.initrd, 1, ram_mib, "shell")),
        ("vmm, no reporting", lambda: vmm_command(args.build, args.initrd, 1, ram_mib, "shell") +
         ["--balloon", "free_page_reporting=off"]),
        ("qemu", lambda: qemu_command("q35", args.initrd, 1, ram_mib, "shell") +
         ["-device", "virtio-balloon-pci,free-page-reporting=on"]),
    )
    rows = []
    for name, command in kinds:
        guests = [start_and_wait(command(), "VIM-GUEST-SHELL", interactive=True)[0] for _ in range(args.guests)]
        for guest in guests:
            guest.type(f"memtouch {touched_mib}; echo VIM-TOUCHED\n")
        for guest in guests:
            guest.wait_for("VIM-TOUCHED", whole_line=True, timeout=300)
        # Linux reports free pages in 4 MiB blocks about 2 s after they free up.
        time.sleep(args.settle_seconds)
        rss = [resident_kib(guest.process.pid, ram_mib)[0] for guest in guests]
        for guest in guests:
            guest.stop()
        rows.append((name, rss))
    print(f"density: {args.guests} idle 1-vCPU {ram_mib} MiB guests of each kind, each having touched and freed "
          f"{touched_mib} MiB, measured {args.settle_seconds:g} s later (VmRSS per guest, MiB)")
    ours = statistics.mean(rows[0][1])
    for name, rss in rows:
        mean = statistics.mean(rss)
        print(f"  {name:18s} mean {mean / 1024:7.1f}  min {min(rss) / 1024:7.1f}  max {max(rss) / 1024:7.1f}  "
              f"vmm/this {ours / mean:.2f}")
    print("  target (the issue): the vmm with free page reporting at most QEMU's with free-page-reporting=on")


# What the issue asks of the disk path: 4 KiB random reads one at a time and
# 32 deep, 128 KiB sequential reads and writes 8 deep (as bench/block_compare.py
# runs them on the host).
DISK_JOBS = ["randread-4k-qd1", "randread-4k-qd32", "seqread-128k-qd8", "seqwrite-128k-qd8"]


def vmm_control(path, command, **arguments):
    """One command on the vmm's control socket; its reply (exits on a refusal)."""
    deadline = time.monotonic() + 60
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(60)
        while True:
            try:
                connection.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        connection.sendall(json.dumps({"cmd": command} | arguments).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            reply += chunk
    answer = json.loads(reply)
    if not answer.get("ok"):
        sys.exit(f"vmm {command} on {path}: {answer.get('error', reply)}")
    return answer


class VmmExitCounter:
    """The vmm's user-space exits (port I/O and MMIO, all vCPUs) from `stats`
    on its control socket."""

    def __init__(self, path):
        self.path = path

    def __call__(self):
        stats = vmm_control(self.path, "stats")
        return sum(vcpu["exits"]["port_io"] + vcpu["exits"]["mmio"] for vcpu in stats["vcpus"])


class Qmp:
    """A QEMU monitor (QMP) connection on a Unix socket."""

    def __init__(self, path, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.connection = socket.socket(socket.AF_UNIX)
                self.connection.settimeout(timeout)
                self.connection.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.replies = self.connection.makefile("r")
        self.replies.readline()  # the greeting
        self.events = []  # every asynchronous event seen, in order
        self.execute("qmp_capabilities")

    def execute(self, command, arguments=None):
        request = {"execute": command} | ({"arguments": arguments} if arguments else {})
        self.connection.sendall(json.dumps(request).encode() + b"\n")
        for line in self.replies:
            reply = json.loads(line)
            if "error" in reply:
                sys.exit(f"QMP {command}: {reply['error'].get('desc', reply)}")
            if "return" in reply:
                return reply["return"]
            self.events.append(reply)
        sys.exit(f"QMP {command}: QEMU closed the monitor")


    def event_time(self, name):
        """When QEMU sent the first `name` event seen (seconds, the host's clock), or None."""
        for event in self.events:
            if event.get("event") == name:
                return event["timestamp"]["seconds"] + event["timestamp"]["microseconds"] / 1e6
        return None


class QmpExitCounter(Qmp):
    """QEMU's exits to user space for port I/O and MMIO, all vCPUs: KVM's own
    counters io_exits and mmio_exits through QMP's query-stats (QEMU 7.1+,
    Linux 5.14+). io_exits also counts port I/O that KVM finishes in the
    kernel (PIC, PIT), so it can only overstate QEMU's exits."""

    def __call__(self):
        names = ["io_exits", "mmio_exits"]
        vcpus = self.execute("query-stats", {"target": "vcpu", "providers": [{"provider": "kvm", "names": names}]})
        values = [stat["value"] for vcpu in vcpus for stat in vcpu["stats"] if stat["name"] in names]
        if not values:
            sys.exit("QMP query-stats gave no io_exits or mmio_exits (needs Linux 5.14+ and QEMU 7.1+)")
        return sum(values)


class KernelExitTrace:
    """Every return of KVM_RUN to user space, whatever the reason, counted by
    the kernel for each thread (a histogram trigger on the kvm_userspace_exit
    tracepoint): the same count for both VMMs, read the same way. Needs root
    and tracefs (mounted here if it is not); `why_not` says why it is off."""

    EVENT = "events/kvm/kvm_userspace_exit"
    TRIGGER = "hist:keys=common_pid"

    def __init__(self):
        self.hist, self.why_not = None, ""
        root = next((path for path in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
                     if os.path.isdir(os.path.join(path, "events"))), None)
        if root is None and os.geteuid() == 0 and os.path.isdir("/sys/kernel/tracing"):
            if subprocess.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"],
                              stderr=subprocess.DEVNULL).returncode == 0:
                root = "/sys/kernel/tracing"
        if root is None:
            self.why_not = "no tracefs (root can mount it at /sys/kernel/tracing)"
            return
        self.trigger = os.path.join(root, self.EVENT, "trigger")
        try:
            with open(self.trigger, "w") as trigger:
                trigger.write(self.TRIGGER)
        except OSError as error:
            self.why_not = f"{self.trigger}: {error.strerror}"
            return
        self.hist = os.path.join(root, self.EVENT, "hist")

    def __enter__(self):
        return self

    def __exit__(self, *_):
        if self.hist:
            with open(self.trigger, "w") as trigger:
                trigger.write("!" + self.TRIGGER)

    def counter(self, pid):
        """A function giving the count so far for all threads of process `pid`."""
        def count():
            threads = {int(thread) for thread in os.listdir(f"/proc/{pid}/task")}
            with open(self.hist) as hist:
                return sum(int(hits) for thread, hits in
                           re.findall(r"common_pid:\s*(\d+)\s*}\s*hitcount:\s*(\d+)", hist.read())
                           if int(thread) in threads)
        return count


def run_blkbench(console, counters, jobs, seconds, idle_seconds):
    """Runs blkbench's `jobs` in the guest's shell. Returns {job: {iops,
    MBps, exits per request by each of `counters`}}, and for each counter
    the exits per second of the idle guest and the exits of the handshake
    alone. The counters are read around each job alone: blkbench --handshake
    waits for a byte from us before and after it. What the window still
    holds besides the job, the byte we send and blkbench's done line, is the
    same for every job; blkbench's empty job "none" measures it, and it is
    taken off the others. The idle rate (the guest waiting for its first
    go-ahead) tells exits the requests cause from a VMM's background."""
    # Console output of a line goes on after its last byte reached us (the
    # guest's UART driver takes the transmitter-empty interrupt): let it end
    # on both sides of the window, for every job alike.
    settle_seconds = 0.2

    def read_counters():
        time.sleep(settle_seconds)
        return [counter() for counter in counters]

    console.type(f"blkbench --handshake --seconds {seconds} {' '.join(['none'] + jobs)}\n")
    results, idle, handshake = {}, None, None
    for job in ["none"] + jobs:
        console.wait_for(f"blkbench ready job={job}", whole_line=True)
        before = read_counters()
        if idle is None:
            started = time.monotonic()
            time.sleep(idle_seconds)
            now = [counter() for counter in counters]
            idle = [(end - start) / (time.monotonic() - started) for start, end in zip(before, now)]
            before = now
        console.type("g")
        console.wait_for("blkbench done", timeout=seconds + 300, whole_line=True)
        exits = [end - start for start, end in zip(before, read_counters())]
        console.type("g")
        fields = dict(field.split("=", 1) for field in console.wait_for(f"blkbench job={job} ").split()[1:])
        if job == "none":
            handshake = exits
            continue
        ops = int(fields["ops"])
        results[job] = {"iops": float(fields["iops"]), "MBps": float(fields["MBps"]),
                        "exits": [(count - fixed) / max(ops, 1) for count, fixed in zip(exits, handshake)]}
    return results, idle, handshake


def disk(args):
    """blkbench's jobs in one guest per VMM and round, on the same image; the
    VMMs take turns, in the reverse order every other round, so drift hits
    both alike. Medians over rounds; the ratio is the median of each round's
    ratio. User-space exits per request come from each VMM's own counters
    and, where it can be had, from the kernel's trace for both."""
    with Disks(args.image_dir, 1, args.image_mib, fill=True) as disks, KernelExitTrace() as trace, \
            tempfile.TemporaryDirectory(prefix="vm-compare-") as sockets:
        guest = (args.initrd, args.cpus, args.memory, "shell")
        control_socket, qmp_socket = os.path.join(sockets, "vmm.sock"), os.path.join(sockets, "qmp.sock")
        candidates = {
            "vmm": (lambda: vmm_command(args.build, *guest, disks=disks, api_socket=control_socket),
                    lambda: VmmExitCounter(control_socket)),
            "qemu": (lambda: qemu_command("q35", *guest, disks=disks, qmp_socket=qmp_socket),
                     lambda: QmpExitCounter(qmp_socket)),
        }
        runs = {name: [] for name in candidates}  # (jobs, idle exits/s, handshake exits) per run
        queues = {}
        for run in range(args.runs):
            for name in list(candidates)[::1 if run % 2 == 0 else -1]:
                command, own_counter = candidates[name]
                console, _ = start_and_wait(command(), "VIM-GUEST-SHELL", interactive=True)
                counters = [own_counter()] + ([trace.counter(console.process.pid)] if trace.hist else [])
                # QEMU gives virtio-blk-pci a queue per vCPU; the guest's blk-mq uses them all.
                queues[name] = guest_value(console, "QUEUES", "$(ls /sys/block/vda/mq | wc -l)")
                runs[name].append(run_blkbench(console, counters, DISK_JOBS, args.seconds, min(args.seconds, 2)))
                console.stop()
                print(f"  run {run + 1} {name}: " + "  ".join(
                    f"{job} {result['iops']:.0f} IOPS" for job, result in runs[name][-1][0].items()), flush=True)
        where = disks.describe()
    traced = trace.hist is not None
    print(f"disk: blkbench (Linux AIO, O_DIRECT on /dev/vda) in a {args.cpus}-vCPU {args.memory} MiB guest; "
          f"{args.image_mib} MiB image, {where}; {args.runs} run(s) x {args.seconds:g} s per job; medians")
    print(f"  vmm: --disk (io_uring engine), {queues['vmm']} queue(s); qemu: q35, virtio-blk-pci, aio=io_uring, "
          f"{queues['qemu']} queue(s); both with virtio-rng")
    print("  exits/req: user-space exits per request, less the handshake's. own: the vmm's port_io+mmio "
          "counters, QEMU's KVM io_exits+mmio_exits (query-stats)")
    print("    kernel: every KVM_RUN return to user space (kvm_userspace_exit trace), the same for both"
          if traced else f"    kernel trace unavailable: {trace.why_not}")
    print_disk_table(runs["vmm"], runs["qemu"], traced)
    for name, rows in runs.items():
        idle = [statistics.median(row[1][index] for row in rows) for index in range(len(rows[0][1]))]
        handshake = [statistics.median(row[2][index] for row in rows) for index in range(len(rows[0][2]))]
        print(f"  {name}: exits of the idle guest per second {' / '.join(f'{rate:.1f}' for rate in idle)}, "
              f"of the handshake {' / '.join(f'{count:.0f}' for count in handshake)}"
              f" ({'own / kernel' if traced else 'own'})")
    print("  target (the issue): vmm/qemu >= 1.00, and no more exits per request than QEMU "
          "(judged on the kernel's count where there is one)")


def print_disk_table(ours, theirs, traced):
    """`ours` and `theirs`: run_blkbench's results, one per run."""
    def median(rows, job, key, index=None):
        return statistics.median(row[0][job][key] if index is None else row[0][job][key][index] for row in rows)

    header = f"  {'job':18s} {'vmm IOPS':>9s} {'MB/s':>7s} {'qemu IOPS':>10s} {'MB/s':>7s} {'vmm/qemu':>8s}" \
             f" {'exits/req own: vmm':>19s} {'qemu':>6s}"
    print(header + (f" {'kernel: vmm':>12s} {'qemu':>6s}" if traced else "") + "  target")
    judged = 1 if traced else 0
    for job in DISK_JOBS:
        ratio = statistics.median(mine[0][job]["iops"] / other[0][job]["iops"] for mine, other in zip(ours, theirs))
        exits = [(median(ours, job, "exits", index), median(theirs, job, "exits", index))
                 for index in range(2 if traced else 1)]
        # To the thousandth shown: less is noise (the handshake's own exits
        # vary by a few, so a job can come out a little below zero).
        exits = [tuple(round(value, 3) + 0.0 for value in pair) for pair in exits]
        line = (f"  {job:18s} {median(ours, job, 'iops'):9.0f} {median(ours, job, 'MBps'):7.1f}"
                f" {median(theirs, job, 'iops'):10.0f} {median(theirs, job, 'MBps'):7.1f} {ratio:8.2f}"
                f" {exits[0][0]:19.3f} {exits[0][1]:6.3f}")
        if traced:
            line += f" {exits[1][0]:12.3f} {exits[1][1]:6.3f}"
        met = ratio >= 1.0 and exits[judged][0] <= exits[judged][1]
        print(line + ("  met" if met else "  MISSED"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figure", choices=["boot-time", "memory", "disk", "density"])
    parser.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--memory", type=int, default=512, help="MiB")
    parser.add_argument("--disks", type=int, default=0,
                        help="boot-time, memory: raw images (and an entropy device) to attach")
    parser.add_argument("--image-dir", default=tempfile.gettempdir(),
                        help="where the images go; tmpfs or disk changes the disk figure (default: %(default)s)")
    parser.add_argument("--image-mib", type=int, default=256, help="disk: the image's size")
    parser.add_argument("--seconds", type=float, default=5, help="disk: each job's length")
    parser.add_argument("--guests", type=int, default=4, help="density: guests of each kind")
    parser.add_argument("--settle-seconds", type=float, default=10, help="density: wait after the guests free")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run for CI: 1 run; disk: 1 s jobs on a 64 MiB image")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.seconds, args.image_mib = 1, 1, 64
    args.initrd = os.path.join(args.build, "tests", "guest", "initramfs.cpio.gz")
    if args.quick:
        args.guests, args.settle_seconds = 1, 5
    {"boot-time": boot_time, "memory": memory, "disk": disk, "density": density}[args.figure](args)


if __name__ == "__main__":
    main()
