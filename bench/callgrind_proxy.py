#!/usr/bin/env python3
"""Instructions per proxied request, counted by callgrind (independent of the machine's load).

Runs `<bin> server` under `valgrind --tool=callgrind`, starts one echo session, sends a
warm-up of keep-alive `GET /<id>/status` through the proxy, zeroes the counters, sends N more
on the same connection, dumps, and prints the proxy process's instructions per request. The
server's background work (status refreshes, the port watch) runs meanwhile and scales with
time, not requests: it is measured over `--idle` seconds without requests afterwards and
subtracted pro rata (`per_request`; `raw_per_request` keeps it). Auth is off (the proxy path alone). Usage:

    bench/callgrind_proxy.py --bin target/release/agentapi-proxy [-n 2000] [--warmup 200]
"""

import argparse
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_health(port, proc, deadline_s=120):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited before it listened")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not answer /health in time")


def gets(conn, path, count):
    for _ in range(count):
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path} -> {response.status}")


def total_instructions(out_file):
    with open(out_file) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {out_file}")


def control(proc, command, out=None):
    """Runs `callgrind_control <command>`; after a dump (`-d`), the dump's total."""
    subprocess.run(["callgrind_control", command, str(proc.pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if out is None:
        return None
    dumps = sorted(glob.glob(out + "*"), key=os.path.getmtime)
    return total_instructions(dumps[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--idle", type=float, default=5.0)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="callgrind-proxy-")
    start = free_port() % 20000 + 20000
    config = {
        "agent": {"server": "builtin:echo"},
        "data_dir": os.path.join(work, "data"),
        "start_port": start,
        "end_port": start + 8,
    }
    config_path = os.path.join(work, "config.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    port = free_port()
    out = os.path.join(work, "callgrind.out")
    env = dict(os.environ, RUST_LOG="warn")
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         os.path.abspath(args.bin), "server", "-c", config_path, "-p", str(port)],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "log"), "w"),
        start_new_session=True)
    try:
        wait_health(port, proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("POST", "/start", body=json.dumps({}),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST /start -> {response.status} {body[:200]!r}")
        session = json.loads(body)["session_id"]
        path = f"/{session}/status"
        gets(conn, path, args.warmup)
        control(proc, "-z")
        began = time.monotonic()
        gets(conn, path, args.n)
        busy = time.monotonic() - began
        instructions = control(proc, "-d", out)
        control(proc, "-z")
        began = time.monotonic()
        time.sleep(args.idle)
        idle = control(proc, "-d", out) / (time.monotonic() - began)
        print(json.dumps({"bin": args.bin, "requests": args.n, "seconds": round(busy, 2),
                          "raw_per_request": round(instructions / args.n),
                          "idle_per_second": round(idle),
                          "per_request": round((instructions - idle * busy) / args.n)}))
        conn.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
