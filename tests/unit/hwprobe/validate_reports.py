#!/usr/bin/env python3
"""Runs the hwprobe command on this host, on every fixture host and on damaged
copies of them, and checks that each report validates against the documented
JSON Schema (hwprobe/schema/inventory.schema.json), and that damage shows up as
warnings rather than as a failed run."""

import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

import jsonschema

# (file under the fixture, what to write there; None removes it)
DAMAGE = [
    ("proc/meminfo", "MemTotal: lots kB\nMemAvailable:\n"),
    ("proc/cpuinfo", "\x00\xff garbage"),
    ("proc/sys/kernel/osrelease", None),
    ("proc/sys/vm/overcommit_memory", ""),
    ("sys/devices/system/cpu/online", "0-x"),
    ("sys/devices/system/cpu/cpu0/topology/core_id", "-1"),
    ("sys/devices/system/node/node0/distance", "10 ten"),
    ("sys/devices/system/node/node0/cpulist", "3-1"),
    ("sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "99999999999999999999999"),
    ("sys/kernel/mm/ksm/run", "on"),
]


def run(hwprobe, *arguments):
    result = subprocess.run([hwprobe, *arguments], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"hwprobe {' '.join(arguments)}: exit {result.returncode}: {result.stderr}")
    return result.stdout


def damage(tree):
    for relative, content in DAMAGE:
        path = tree / relative
        if path.is_symlink() or path.is_file():
            path.unlink()
        if content is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode("latin-1"))
    # Every disk and PCI device loses one attribute.
    for attribute in [*tree.glob("sys/block/*/queue/rotational"), *tree.glob("sys/bus/pci/devices/*/vendor")]:
        attribute.write_text("garbage\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hwprobe", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--fixtures", required=True)
    options = parser.parse_args()

    schema = json.loads(pathlib.Path(options.schema).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    failures = 0

    def check(name, arguments, expect_warnings):
        nonlocal failures
        report = json.loads(run(options.hwprobe, *arguments))
        errors = sorted(validator.iter_errors(report), key=lambda error: list(error.absolute_path))
        for error in errors:
            print(f"{name}: {'/'.join(map(str, error.absolute_path))}: {error.message}", file=sys.stderr)
        if expect_warnings is not None and bool(report["warnings"]) != expect_warnings:
            print(f"{name}: warnings {report['warnings']}, expected {'some' if expect_warnings else 'none'}",
                  file=sys.stderr)
            errors.append(None)
        run(options.hwprobe, "--format", "table", *arguments)
        failures += bool(errors)
        print(f"{name}: {'FAILED' if errors else 'valid'}")

    with tempfile.TemporaryDirectory(prefix="hwprobe-schema-") as scratch:
        scratch = pathlib.Path(scratch)
        dev = scratch / "dev"
        dev.mkdir()
        check("this host", ["--state-dir", str(scratch)], expect_warnings=None)
        for fixture in sorted(pathlib.Path(options.fixtures).iterdir()):
            roots = lambda tree: ["--sysfs-root", str(tree / "sys"), "--procfs-root", str(tree / "proc"),
                                  "--dev-root", str(dev)]
            check(fixture.name, roots(fixture), expect_warnings=False)
            damaged = scratch / fixture.name
            shutil.copytree(fixture, damaged, symlinks=True)
            damage(damaged)
            check(f"{fixture.name}, damaged", roots(damaged), expect_warnings=True)
        check("no sysfs or procfs", ["--sysfs-root", str(scratch / "none"), "--procfs-root", str(scratch / "none"),
                                     "--dev-root", str(dev), "--state-dir", str(scratch / "none")],
              expect_warnings=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
