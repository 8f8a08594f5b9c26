#!/usr/bin/env python3
"""Boots the Debian image from build-debian-image.sh under QEMU and checks it as the KVM test will.

    tests/guest/boot-debian-in-qemu.py [--image-dir DIR] [--append EXTRA] [--timeout S] [--log FILE]

It boots a copy of DIR/debian.raw (the cached image stays as built) on q35 with the
image's vmlinuz and initrd.img, virtio-blk over PCI and nothing else, waits for the
autologin shell's VIM-DEBIAN-READY, asks `systemctl is-system-running --wait` (running
or degraded passes; failed units are listed), runs `systemctl poweroff` (or reboot,
which -no-reboot turns into an exit too), waits for QEMU to exit by itself and checks
that the file system was unmounted cleanly.
KVM is used where /dev/kvm exists, TCG otherwise. Only the Python standard library.
"""

import argparse
import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time

DEFAULT_IMAGE_DIR = os.environ.get("VIM_DEBIAN_IMAGE_DIR", "/var/cache/vim-tests/debian-12")


class Console:
    """The guest's ttyS0 as QEMU's stdio: everything read is kept and logged."""

    def __init__(self, process, log):
        self.process = process
        self.log = log
        self.text = ""
        self.searched_from = 0
        self.closed = False
        self.selector = selectors.DefaultSelector()
        self.selector.register(process.stdout, selectors.EVENT_READ)
        os.set_blocking(process.stdout.fileno(), False)

    def read_some(self, timeout):
        """Reads what arrived within timeout; False when nothing did or QEMU closed its output."""
        if self.closed:
            time.sleep(timeout)
            return False
        if not self.selector.select(timeout):
            return False
        data = self.process.stdout.read()
        if data is None:
            return False
        if not data:
            self.closed = True
            self.selector.unregister(self.process.stdout)
            return False
        chunk = data.decode("utf-8", "replace")
        self.log.write(chunk)
        self.log.flush()
        self.text += chunk
        return True

    def expect(self, pattern, timeout, what):
        """Waits for pattern in what the guest printed after the previous match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.text, self.searched_from)
            if match:
                self.searched_from = match.end()
                return match
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what}: no {pattern!r} on the console within {timeout}s")
            if not self.read_some(min(left, 1.0)) and self.process.poll() is not None:
                raise RuntimeError(f"{what}: QEMU exited with {self.process.returncode} first")

    def send(self, line):
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def run(self, command, timeout, what):
        """Runs command in the guest's shell and returns its output line.

        The marker is split by quotes in what is typed, so the shell's echo of the
        command line cannot match; only the command's output can.
        """
        self.send(f'echo "VIM-""OUT[$({command})]"')
        return self.expect(r"VIM-OUT\[([^\]]*)\]", timeout, what).group(1)


def ext4_state(image):
    header = subprocess.run(["dumpe2fs", "-h", image], capture_output=True, text=True, check=True).stdout
    match = re.search(r"^Filesystem state:\s*(.+)$", header, re.MULTILINE)
    return match.group(1).strip() if match else "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-dir", default=DEFAULT_IMAGE_DIR)
    parser.add_argument("--append", default="", help="more kernel command line, e.g. acpi=off")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for each step")
    parser.add_argument("--shutdown", choices=("poweroff", "reboot"), default="poweroff",
                        help="how the guest ends; QEMU runs with -no-reboot, so a reboot exits it too")
    parser.add_argument("--log", help="the whole console, written as it arrives")
    parser.add_argument("--qemu", default="qemu-system-x86_64")
    args = parser.parse_args()

    for name in ("debian.raw", "vmlinuz", "initrd.img"):
        if not os.path.isfile(os.path.join(args.image_dir, name)):
            sys.exit(f"boot-debian-in-qemu: {args.image_dir}/{name} is missing (run build-debian-image.sh)")

    with tempfile.TemporaryDirectory(prefix="boot-debian.") as scratch:
        disk = os.path.join(scratch, "debian.raw")
        subprocess.run(["cp", "--sparse=always", os.path.join(args.image_dir, "debian.raw"), disk], check=True)
        accelerator = "kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "tcg"
        command = [
            args.qemu, "-machine", f"q35,accel={accelerator}", "-cpu", "max" if accelerator == "tcg" else "host",
            "-m", "1024", "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", "stdio", "-monitor", "none",
            "-kernel", os.path.join(args.image_dir, "vmlinuz"),
            "-initrd", os.path.join(args.image_dir, "initrd.img"),
            "-append", f"console=ttyS0 root=/dev/vda rw {args.append}".strip(),
            "-drive", f"file={disk},if=virtio,format=raw",
        ]
        log = open(args.log, "w") if args.log else open(os.devnull, "w")
        print(f"boot-debian-in-qemu: {' '.join(command)}", flush=True)
        started = time.monotonic()
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        console = Console(process, log)

        def elapsed():
            return f"{time.monotonic() - started:.1f}s"

        try:
            console.expect(r"VIM-DEBIAN-READY\r?\n", args.timeout, "autologin")
            print(f"boot-debian-in-qemu: logged in after {elapsed()}", flush=True)
            state = console.run("systemctl is-system-running --wait", args.timeout, "is-system-running")
            failed = console.run("systemctl list-units --state=failed --no-legend --plain | cut -d' ' -f1 "
                                 "| tr '\\n' ' '", 60, "failed units")
            print(f"boot-debian-in-qemu: system {state} after {elapsed()}; failed units: {failed.strip() or 'none'}",
                  flush=True)
            startup = console.run("systemd-analyze | head -n 1", 60, "systemd-analyze")
            print(f"boot-debian-in-qemu: {startup}", flush=True)
            if state not in ("running", "degraded"):
                raise RuntimeError(f"systemctl is-system-running says {state!r}")
            shutdown_from = len(console.text)
            console.send(f"systemctl {args.shutdown}")
            deadline = time.monotonic() + args.timeout
            while process.poll() is None:
                if "reboot: System halted" in console.text[shutdown_from:]:
                    raise RuntimeError(f"systemctl {args.shutdown} halted the guest but QEMU runs on: without "
                                       "ACPI (acpi=off) Linux cannot power off; --shutdown reboot ends QEMU")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"QEMU still runs {args.timeout}s after systemctl {args.shutdown}")
                console.read_some(1.0)
            while console.read_some(0):
                pass
            if process.returncode != 0:
                raise RuntimeError(f"QEMU exited with {process.returncode} after systemctl {args.shutdown}")
            state = ext4_state(disk)
            print(f"boot-debian-in-qemu: QEMU exited after {elapsed()}; file system {state}", flush=True)
            if state != "clean":
                raise RuntimeError(f"the file system is {state!r} after poweroff, not clean")
        except (TimeoutError, RuntimeError) as error:
            print(f"boot-debian-in-qemu: {error}\n--- last console lines ---", file=sys.stderr)
            print("\n".join(console.text.splitlines()[-40:]), file=sys.stderr)
            return 1
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
    print("boot-debian-in-qemu: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
