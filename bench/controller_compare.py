#!/usr/bin/env python3
"""Controller benchmarks, side by side in one run.

1. Create-VM API latency: wrk with N concurrent connections POSTs /v1/vms (a unique name per request)
   to a real vimd with a real SQLite file; the hosts' agents are played by a small HTTP server here
   (creation is answered 202 before the agent is called, so the agent is off the measured path).
   Target: p99 < 5 ms with 64 clients. Twice: saturated (each client sends its next create as soon as the
   last is answered, so latency is clients / throughput) and paced (each client waits a random time,
   averaging clients / --paced-rate seconds, between creates: the latency of a create when the server
   is not saturated).
2. Image upload throughput: curl uploads the same file to vimd (streamed to disk, sha256 computed
   and checked, fdatasync'd) and to a plain HTTP server on loopback that only writes the body to a
   file on the same filesystem (and fdatasyncs it, as vimd does). Target: vimd >= 80% of it.

usage: bench/controller_compare.py --vimd build/release/controller/vimd/vimd [--clients 64]
       [--duration 10] [--paced-rate 1000] [--image-mib 1024] [--durability power-loss|process-crash]

--durability is vimd's: power-loss (the default) fsyncs every commit before answering, so a create's
latency includes at least one fsync of the disk; process-crash answers once the commit is written (it
survives kill -9 of vimd, not a crash of the machine).
"""
import argparse
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


class AgentHandler(http.server.BaseHTTPRequestHandler):
    """The controller -> agent API, answering every call at once."""

    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("Content-Length", "0"))
        if length:
            self.rfile.read(length)
        body = b'{"state": "running"}'
        if self.path.endswith("incoming-migration"):
            body = b'{"uri": "tcp:127.0.0.1:1"}'
        elif self.path.endswith("snapshot"):
            body = b'{"path": "/tmp/x"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET = do_DELETE = _answer

    def log_message(self, *args):
        pass


class SinkHandler(http.server.BaseHTTPRequestHandler):
    """A plain upload target: the body goes to a file, in 1 MiB reads, then fdatasync."""

    protocol_version = "HTTP/1.1"
    target = None

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        if self.headers.get("Expect", "").lower() == "100-continue":
            self.send_response_only(100)
            self.end_headers()
        with open(self.target, "wb") as out:
            left = length
            while left:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                out.write(chunk)
                left -= len(chunk)
            out.flush()
            os.fdatasync(out.fileno())
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def call(base, method, path, body=None, headers=None):
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers or {})
    if isinstance(body, (dict, list)):
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request) as reply:
        return reply.status, reply.read()


WRK_SCRIPT = r"""
local pause_ms = PAUSE_MS
local counter = 0
local thread_id = 0
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  thread_id = id
  math.randomseed(id)
end
if pause_ms > 0 then
  delay = function()
    return math.random(0, 2 * pause_ms)
  end
end
request = function()
  counter = counter + 1
  local body = '{"name":"b' .. thread_id .. '-' .. counter .. '","vcpus":1,"memory_mib":64,"image":"bench"}'
  return wrk.format("POST", "/v1/vms", {["Content-Type"] = "application/json"}, body)
end
local codes = {}
response = function(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT p50_us=%d p90_us=%d p99_us=%d max_us=%d requests=%d errors=%d\n",
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout))
end
"""


def start_vimd(binary, state, extra=()):
    process = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--db", os.path.join(state, "vimd.db"), "--log-level", "warn",
         "--max-image-bytes", str(1 << 40), *extra],
        stdout=subprocess.PIPE, stderr=open(os.path.join(state, "vimd.log"), "w"), text=True)
    line = process.stdout.readline()
    match = re.match(r"vimd: listening on (http://\S+)", line)
    if not match:
        process.kill()
        sys.exit("vimd did not start: " + open(os.path.join(state, "vimd.log")).read())
    return process, match.group(1)


def bench_create_latency(args, state, rate):
    agent = serve(AgentHandler)
    agent_url = "http://127.0.0.1:%d" % agent.server_address[1]
    vimd, base = start_vimd(args.vimd, state, ["--http-threads", str(max(64, args.clients + 8)),
                                               "--durability", args.durability])
    try:
        for i in range(8):
            call(base, "POST", "/v1/hosts", {"name": "h%d" % i, "agent_url": agent_url, "cpus": 4096,
                                             "memory_mib": 64 << 20, "disk_gib": 100000})
        call(base, "POST", "/v1/images?name=bench", b"image", {"Content-Type": "application/octet-stream"})
        script = os.path.join(state, "create.lua")
        pause_ms = round(args.clients * 1000 / rate) if rate else 0
        with open(script, "w") as out:
            out.write(WRK_SCRIPT.replace("PAUSE_MS", str(pause_ms)))
        threads = min(args.clients, os.cpu_count() or 2)
        output = subprocess.run(["wrk", "-t%d" % threads, "-c%d" % args.clients, "-d%ds" % args.duration,
                                 "--latency", "-s", script, base], capture_output=True, text=True, check=True).stdout
        result = dict(re.findall(r"(\w+)=(\d+)", output.split("RESULT", 1)[1]))
        _, body = call(base, "GET", "/v1/vms?limit=1")
        return {k: int(v) for k, v in result.items()}
    finally:
        vimd.terminate()
        vimd.wait()
        agent.shutdown()


def timed_curl(url, path):
    started = time.monotonic()
    output = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                             "Content-Type: application/octet-stream", "--data-binary", "@" + path, url],
                            capture_output=True, text=True, check=True).stdout
    return time.monotonic() - started, output


def bench_upload(args, state):
    image = os.path.join(state, "image.raw")
    size = args.image_mib << 20
    with open(image, "wb") as out:
        block = os.urandom(1 << 20)
        for _ in range(args.image_mib):
            out.write(block)
    sha256 = hashlib.sha256(open(image, "rb").read()).hexdigest()

    SinkHandler.target = os.path.join(state, "sink.raw")
    sink = serve(SinkHandler)
    vimd, base = start_vimd(args.vimd, os.path.join(state))
    try:
        results = {}
        for round_number in range(args.rounds):
            # Each side once per round, alternating, best of the rounds: the page cache and the disk
            # see the same work for both.
            seconds, code = timed_curl("http://127.0.0.1:%d/upload" % sink.server_address[1], image)
            assert code == "201", code
            results.setdefault("plain", []).append(seconds)
            os.unlink(SinkHandler.target)
            seconds, code = timed_curl("%s/v1/images?name=img%d&sha256=%s" % (base, round_number, sha256), image)
            assert code == "201", code
            results.setdefault("vimd", []).append(seconds)
            call(base, "DELETE", "/v1/images/img%d" % round_number)
        plain = size / min(results["plain"]) / 1e6
        ours = size / min(results["vimd"]) / 1e6
        return {"plain_mb_s": plain, "vimd_mb_s": ours, "ratio": ours / plain}
    finally:
        vimd.terminate()
        vimd.wait()
        sink.shutdown()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vimd", required=True)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--paced-rate", type=int, default=1000, help="creates/s offered in the paced run")
    parser.add_argument("--durability", default="power-loss", choices=("power-loss", "process-crash"),
                        help="vimd's --durability in the create runs")
    parser.add_argument("--image-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for tool in ("wrk", "curl"):
        if shutil.which(tool) is None:
            sys.exit(tool + " not found: apt-get install " + tool)
    with tempfile.TemporaryDirectory(prefix="controller-bench-", dir=os.environ.get("TMPDIR", "/var/tmp")) as state:
        for rate in (0, args.paced_rate):
            run_state = os.path.join(state, "create-%d" % rate)
            os.mkdir(run_state)
            latency = bench_create_latency(args, run_state, rate)
            print("create-VM latency, %d clients, %s, %d s, vimd --durability %s: p50 %.2f ms  p90 %.2f ms  "
                  "p99 %.2f ms  max %.2f ms  (%d requests, %.0f/s, %d errors; target p99 < 5 ms)" % (
                      args.clients, "paced at %d/s offered" % rate if rate else "saturated", args.duration,
                      args.durability,
                      latency["p50_us"] / 1000, latency["p90_us"] / 1000, latency["p99_us"] / 1000,
                      latency["max_us"] / 1000, latency["requests"], latency["requests"] / args.duration,
                      latency["errors"]), flush=True)
        upload_state = os.path.join(state, "upload")
        os.mkdir(upload_state)
        upload = bench_upload(args, upload_state)
        print("image upload, %d MiB, best of %d: vimd %.0f MB/s, plain HTTP sink %.0f MB/s: %.0f%% "
              "(target >= 80%%)" % (args.image_mib, args.rounds, upload["vimd_mb_s"], upload["plain_mb_s"],
                                    upload["ratio"] * 100))


if __name__ == "__main__":
    main()
