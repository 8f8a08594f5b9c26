#!/usr/bin/env python3
"""Our disk engines beside fio, measured in one run on the same files, jobs and O_DIRECT setting:

  ours io_uring  bench/block_engine_bench driving the io_uring engine as the virtio-blk device does
  fio io_uring   fio --ioengine=io_uring with the equivalent job (fio's defaults otherwise)
  ours sync      the synchronous engine (preadv/pwritev inline): what a kernel without io_uring gets
  fio psync      fio --ioengine=psync: a plain pread/pwrite loop, one request at a time

Jobs: 4 KiB random reads at queue depth 1 and 32, 128 KiB sequential reads and writes at depth 8,
on a file in tmpfs (/dev/shm) and one on disk (/var/tmp), with O_DIRECT where the filesystem takes
it. Each measurement is repeated, interleaved with the others (in the reverse order every other
round) so drift hits all alike; the table shows medians, and each ratio is the median of the
ratios of neighbouring measurements. On a shared machine single runs vary by +-50%: trust the
ratios over many repeats, not one cell. Targets (from the issue): ours io_uring reaches 90% of fio's IOPS at depth 32
and at least fio's at depth 1.

  bench/block_compare.py --build build/release            # full run (about 5 minutes)
  bench/block_compare.py --build build/release --quick    # smoke run for CI (seconds)
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name: (fio rw, block size, queue depth); the same as kJobs in bench/block_engine_bench.cpp.
JOBS = {
    "randread_4k_qd1": ("randread", 4096, 1),
    "randread_4k_qd32": ("randread", 4096, 32),
    "seqread_128k_qd8": ("read", 128 << 10, 8),
    "seqwrite_128k_qd8": ("write", 128 << 10, 8),
}
TARGETS = {"randread_4k_qd32": 0.90, "randread_4k_qd1": 1.00}
COLUMNS = ["ours io_uring", "fio io_uring", "ours sync", "fio psync"]


def create_file(path, size):
    """`size` bytes of random data: holes would cost the disk nothing to read."""
    if os.path.exists(path) and os.path.getsize(path) == size:
        return False
    with open(path, "wb") as out:
        chunk = 1 << 20
        for _ in range(size // chunk):
            out.write(os.urandom(chunk))
        out.flush()
        os.fsync(out.fileno())
    return True


def takes_direct(path):
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECT))
        return True
    except OSError:
        return False


def run_ours(bench, engine, label, path, job, direct, seconds):
    command = [bench, f"--file={label}={path}", f"--engines={engine}", f"--direct={'on' if direct else 'off'}",
               f"--benchmark_filter=^{engine}/{job}/{label}/", f"--benchmark_min_time={seconds}",
               "--benchmark_format=json"]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    runs = json.loads(result.stdout)["benchmarks"]
    if len(runs) != 1 or runs[0].get("error_occurred") or runs[0]["time_unit"] != "ns":
        sys.exit(f"{' '.join(command)}: {runs}")
    # cpu_time: the process's CPU time per iteration (one I/O), io_uring's workers included.
    return runs[0]["IOPS"], runs[0]["MB/s"], runs[0]["cpu_time"] / 1000


def run_fio(engine, path, size, job, direct, seconds):
    rw, block_size, depth = JOBS[job]
    if engine == "psync":
        depth = 1  # one request at a time is what it does; a higher depth only draws a note
    command = ["fio", f"--name={job}", f"--filename={path}", f"--size={size}", f"--ioengine={engine}",
               f"--rw={rw}", f"--bs={block_size}", f"--iodepth={depth}", f"--direct={int(direct)}",
               "--time_based", f"--runtime={int(seconds * 1000)}ms", "--norandommap", "--randrepeat=0",
               "--output-format=json"]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    report = json.loads(result.stdout)["jobs"][0]
    side = report["write" if "write" in rw else "read"]
    # usr_cpu and sys_cpu: percent of the job's run time, its process's threads together.
    cpu_seconds = (report["usr_cpu"] + report["sys_cpu"]) / 100 * report["job_runtime"] / 1000
    return side["iops"], side["bw_bytes"] / 1e6, cpu_seconds * 1e6 / max(side["total_ios"], 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(ROOT, "build", "release"),
                        help="the build directory holding bench/block_engine_bench (not a sanitizer build)")
    parser.add_argument("--tmpfs-file", default="/dev/shm/vim-block-compare.img")
    parser.add_argument("--disk-file", default="/var/tmp/vim-block-compare.img")
    parser.add_argument("--size", type=int, default=1024, help="MiB per file")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--repeat", type=int, default=5, help="measurements per cell; the median is shown")
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 MiB files, 0.2 s, once")
    parser.add_argument("--keep-files", action="store_true", help="leave the files for the next run")
    args = parser.parse_args()
    if args.quick:
        args.size, args.seconds, args.repeat = 64, 0.2, 1

    bench = os.path.join(args.build, "bench", "block_engine_bench")
    if not os.access(bench, os.X_OK):
        sys.exit(f"{bench} is missing: ninja -C {args.build} block_engine_bench")
    if shutil.which("fio") is None:
        sys.exit("fio is missing: apt-get install fio (scripts/install-deps.sh)")

    size = args.size << 20
    files = [("tmpfs", args.tmpfs_file), ("disk", args.disk_file)]
    created = [path for _, path in files if create_file(path, size)]
    try:
        direct = {label: takes_direct(path) for label, path in files}
        samples = {}
        for round_number in range(args.repeat):
            for label, path in files:
                for job in JOBS:
                    cell = samples.setdefault((label, job), {column: [] for column in COLUMNS})
                    both = (job, direct[label], args.seconds)
                    measure = {
                        "ours io_uring": lambda: run_ours(bench, "io_uring", label, path, *both),
                        "fio io_uring": lambda: run_fio("io_uring", path, size, *both),
                        "ours sync": lambda: run_ours(bench, "sync", label, path, *both),
                        "fio psync": lambda: run_fio("psync", path, size, *both),
                    }
                    for column in (COLUMNS if round_number % 2 == 0 else reversed(COLUMNS)):
                        cell[column].append(measure[column]())
    finally:
        if not args.keep_files:
            for path in created:
                os.unlink(path)

    def median(values):
        return tuple(statistics.median(figures) for figures in zip(*values))

    def ratio(cell, ours, theirs):
        return statistics.median(mine[0] / other[0] for mine, other in zip(cell[ours], cell[theirs]))

    print(f"{args.repeat} x {args.seconds:g} s per cell, median shown; {os.cpu_count()} CPUs; "
          f"files of {args.size} MiB")
    header = f"{'file':<6} {'job':<18} {'I/O':<8}"
    for column in COLUMNS:
        header += f" {column + ' IOPS':>17} {'MB/s':>6}"
    header += f" {'ours/fio io_uring':>17} {'ours/fio sync':>13}"
    print(header)
    verdicts = []
    cpu_rows = []
    for (label, job), cell in samples.items():
        figures = {column: median(values) for column, values in cell.items()}
        row = f"{label:<6} {job:<18} {'direct' if direct[label] else 'buffered':<8}"
        cpu_row = f"{label:<6} {job:<18} {'direct' if direct[label] else 'buffered':<8}"
        for column in COLUMNS:
            iops, megabytes, cpu = figures[column]
            row += f" {iops:>17,.0f} {megabytes:>6,.0f}"
            cpu_row += f" {cpu:>17,.1f}"
        uring_ratio = ratio(cell, "ours io_uring", "fio io_uring")
        sync_ratio = ratio(cell, "ours sync", "fio psync")
        row += f" {uring_ratio:>17.2f} {sync_ratio:>13.2f}"
        print(row)
        cpu_rows.append(cpu_row)
        if job in TARGETS:
            met = uring_ratio >= TARGETS[job]
            verdicts.append(f"{'met' if met else 'MISSED'}: {label} {job}: ours/fio io_uring {uring_ratio:.2f}, "
                            f"target >= {TARGETS[job]:.2f}")
    print()
    print("CPU time per I/O (us), the process's threads together (less noisy than IOPS on a shared machine)")
    print(f"{'file':<6} {'job':<18} {'I/O':<8}" + "".join(f" {column:>17}" for column in COLUMNS))
    print("\n".join(cpu_rows))
    print()
    print("\n".join(verdicts))
    if args.quick:
        print("(--quick: too short for the targets to mean anything)")


if __name__ == "__main__":
    main()
