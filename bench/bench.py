#!/usr/bin/env python3
"""Benchmark probe for agentapi-proxy (T1, T2, T3, T7 of ../shared/spec/performance.md).

Starts, side by side, on 127.0.0.1 only:
  - proxy "on":  agentapi-proxy with static-key auth (as deployed), one echo-agent session;
  - proxy "off": a second agentapi-proxy with auth disabled, its own echo-agent session;
  - nginx: proxies /<id>/ to the "on" proxy's agent (2 workers, upstream keep-alive);
  - direct: the "on" proxy's agent port itself.
Then interleaves repetitions (direct, nginx, proxy, proxy-off, direct, nginx, ...) of a wrk
load on GET /<id>/status and of an SSE round trip, and prints the median of the
per-repetition ratios with their min-max.

Every figure is a ratio measured in the same run; absolute numbers are only context.
Stdlib only. Run through bench/run.sh (which installs nginx and wrk and builds the proxy).
"""

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

API_KEY = "ap_bench_key"
KEY_HEADER = "X-API-Key"
AGENT_ENV = {"ECHO_AGENT_BOOT_MS": "0", "ECHO_AGENT_REPLY_MS": "20"}

TARGETS = {
    # id: (description, comparator, bound)
    "T1": ("GET /status throughput, proxy/nginx", ">=", 1.0),
    "T2": ("GET /status p99 latency, proxy/nginx", "<=", 1.2),
    "T3": ("SSE POST->frame median, proxy/nginx", "<=", 1.1),
    "T7": ("GET /status throughput, auth on/off", ">=", 0.97),
}


def log(*args):
    print("[bench]", *args, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Process bookkeeping: every child gets its own process group; all are killed on exit.
# --------------------------------------------------------------------------------------------

class Procs:
    def __init__(self):
        self.groups = []  # (name, Popen, term_signal, grace_seconds)
        self.extra_pgids = set()  # agent process groups learnt from /debug/env

    def spawn(self, name, argv, term_signal=signal.SIGTERM, grace=20.0, **kw):
        p = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL, **kw)
        self.groups.append((name, p, term_signal, grace))
        return p

    def cleanup(self):
        # Gentle first (proxies stop their agents on SIGTERM), then SIGKILL the groups.
        for name, p, sig, grace in reversed(self.groups):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
        for name, p, sig, grace in reversed(self.groups):
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop within {grace}s; SIGKILL")
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for pgid in self.extra_pgids:
            try:
                os.killpg(pgid, signal.SIGKILL)
                log(f"killed leftover agent process group {pgid}")
            except (ProcessLookupError, PermissionError):
                pass
        self.groups.clear()
        self.extra_pgids.clear()


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_port_range(n):
    """n consecutive ports that are all bindable right now (for the proxy's agent ports)."""
    for _ in range(200):
        base = random.randint(20000, 60000 - n)
        ok = True
        for port in range(base, base + n):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                ok = False
            finally:
                s.close()
            if not ok:
                break
        if ok:
            return base, base + n - 1
    raise RuntimeError("no free port range found")


def http(method, url, body=None, headers=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_http(url, deadline_s, headers=None, proc=None, name="server"):
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} before answering")
        try:
            status, _ = http("GET", url, headers=headers, timeout=2)
            if status < 500:
                return
            last = status
        except OSError as e:
            last = e
        time.sleep(0.02)
    raise RuntimeError(f"{name} did not answer {url} within {deadline_s}s (last: {last})")


def proc_cpu_seconds(pid):
    """utime+stime of one process (all its threads), in seconds; None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Threads", "VmRSS", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                    out[k] = v.strip()
    except OSError:
        pass
    return out


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


# --------------------------------------------------------------------------------------------
# The servers
# --------------------------------------------------------------------------------------------

class Proxy:
    def __init__(self, procs, binary, tmp, name, auth):
        self.name = name
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir)
        lo, hi = free_port_range(8)
        cfg = {
            "agent": {"server": "builtin:echo"},
            "auth": {
                "enabled": auth,
                "static": {
                    "enabled": auth,
                    "api_keys": [
                        {"key": API_KEY, "user_id": "bench", "role": "admin", "permissions": ["*"]}
                    ],
                },
            },
            "data_dir": os.path.join(self.dir, "data"),
            "start_port": lo,
            "end_port": hi,
        }
        self.config_path = os.path.join(self.dir, "config.json")
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=2)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(self.dir, "proxy.log")
        env = dict(os.environ, RUST_LOG="warn")
        for k in list(env):
            if k.startswith("AGENTAPI_PROXY_"):
                del env[k]
        logf = open(self.log_path, "wb")
        self.proc = procs.spawn(
            f"proxy-{name}",
            [binary, "server", "-c", self.config_path, "-p", str(self.port), "--log-format", "json"],
            stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=self.dir,
        )
        logf.close()
        self.procs = procs
        wait_http(self.base + "/health", 30, proc=self.proc, name=f"proxy-{name}")

    def start_session(self):
        t0 = time.monotonic()
        status, body = http("POST", self.base + "/start", {"environment": AGENT_ENV},
                            headers={KEY_HEADER: API_KEY}, timeout=60)
        if status != 200:
            raise RuntimeError(f"proxy-{self.name}: POST /start -> {status} {body[:300]!r}")
        j = json.loads(body)
        self.session_id = j["session_id"]
        self.agent_port = int(j["port"])
        self.start_ms = (time.monotonic() - t0) * 1000
        # Cross-check the port with /search, as performance.md says nginx/direct should use it.
        status, body = http("GET", self.base + "/search", headers={KEY_HEADER: API_KEY})
        if status == 200:
            for s in json.loads(body).get("sessions", []):
                if s.get("session_id") == self.session_id and s.get("port"):
                    self.agent_port = int(s["port"])
        # Learn the agent's pid (for CPU accounting and a last-resort kill of its group).
        self.agent_pid = None
        status, body = http("GET", f"http://127.0.0.1:{self.agent_port}/debug/env")
        if status == 200:
            try:
                self.agent_pid = int(json.loads(body)["pid"])
                self.procs.extra_pgids.add(os.getpgid(self.agent_pid))
            except (KeyError, ValueError, TypeError, ProcessLookupError):
                pass
        return self.session_id, self.agent_port


NGINX_CONF = """\
{user}worker_processes {workers};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream agent {{
        server 127.0.0.1:{agent_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location /{sid}/ {{
            proxy_pass http://agent/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host 127.0.0.1:{agent_port};
            # The proxy sets these too (sessions.md), so nginx does the same work.
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, procs, tmp, agent_port, sid, workers=2):
        self.dir = os.path.join(tmp, f"nginx-w{workers}")
        os.makedirs(self.dir)
        self.port = free_port()
        conf = NGINX_CONF.format(
            user="user root;\n" if os.geteuid() == 0 else "",
            workers=workers, tmp=self.dir, agent_port=agent_port, port=self.port, sid=sid,
        )
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        errf = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.proc = procs.spawn(
            f"nginx-w{workers}",
            [nginx, "-p", self.dir, "-c", self.conf, "-e", os.path.join(self.dir, "nginx-error.log")],
            term_signal=signal.SIGTERM, grace=10, stdout=errf, stderr=subprocess.STDOUT,
        )
        errf.close()
        self.base = f"http://127.0.0.1:{self.port}"
        wait_http(f"{self.base}/{sid}/status", 15, proc=self.proc, name="nginx")

    def pids(self):
        return [self.proc.pid] + children_of(self.proc.pid)


# --------------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m|h)$", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


def run_wrk(url, seconds, conns, cpu_pids):
    """One bounded wrk run. Returns rps, p50/p99 (ms), errors, and CPU seconds per cpu_pids."""
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "5s",
            "-H", f"{KEY_HEADER}: {API_KEY}", url]
    before = {k: sum(filter(None, (proc_cpu_seconds(p) for p in v))) for k, v in cpu_pids.items()}
    t0 = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    wall = time.monotonic() - t0
    after = {k: sum(filter(None, (proc_cpu_seconds(p) for p in v))) for k, v in cpu_pids.items()}
    res = {"url": url, "rc": out.returncode, "wall_s": round(wall, 3)}
    txt = out.stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", txt)
    res["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in", txt)
    res["requests"] = int(m.group(1)) if m else 0
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", txt, re.M)
        res[f"p{pct}_ms"] = _ms(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", txt)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", txt)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    res["cpu_s"] = {k: round(after[k] - before[k], 3) for k in cpu_pids}
    if res["requests"]:
        res["cpu_us_per_req"] = {k: round(v * 1e6 / res["requests"], 1) for k, v in res["cpu_s"].items()}
    if out.returncode != 0 or not res["requests"]:
        res["stderr"] = out.stderr[-500:]
    return res


# --------------------------------------------------------------------------------------------
# SSE round trip (T3): time from sending POST /message to the user message's own
# message_update frame (role "user", message == the content sent) on an open /events stream.
# --------------------------------------------------------------------------------------------

class HttpConn:
    """Minimal HTTP/1.1 keep-alive client on asyncio streams (chunked or content-length)."""

    def __init__(self, host, port, host_header):
        self.host, self.port, self.host_header = host, port, host_header
        self.r = self.w = None

    async def open(self):
        self.r, self.w = await asyncio.open_connection(self.host, self.port)
        sock = self.w.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self):
        if self.w:
            self.w.close()

    def send(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
                f"{KEY_HEADER}: {API_KEY}\r\nAccept: */*\r\n")
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        self.w.write(head.encode() + b"\r\n" + data)

    async def read_head(self):
        head = await self.r.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return status, headers

    async def read_body(self, headers):
        if headers.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            async for chunk in self.chunks():
                out += chunk
            return out
        n = int(headers.get("content-length", "0"))
        return await self.r.readexactly(n) if n else b""

    async def chunks(self):
        while True:
            line = await self.r.readuntil(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                await self.r.readuntil(b"\r\n")
                return
            data = await self.r.readexactly(size)
            await self.r.readexactly(2)
            yield data

    async def request(self, method, path, body=None):
        self.send(method, path, body)
        status, headers = await self.read_head()
        return status, await self.read_body(headers)


async def sse_samples(host_port, prefix, agent_host, n, counter, timeout=5.0):
    """n POST->frame samples (ms) through one path. prefix is '' (direct) or '/<id>'."""
    host, port = host_port
    ev = HttpConn(host, port, f"{host}:{port}" if prefix else agent_host)
    cmd = HttpConn(host, port, f"{host}:{port}" if prefix else agent_host)
    await ev.open()
    await cmd.open()
    waiting = {}  # content -> future
    frames = {"count": 0}

    async def reader():
        ev.send("GET", prefix + "/events")
        status, headers = await ev.read_head()
        if status != 200:
            raise RuntimeError(f"GET {prefix}/events -> {status}")
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        buf = b""

        async def pieces():
            if chunked:
                async for c in ev.chunks():
                    yield c
            else:
                while True:
                    c = await ev.r.read(65536)
                    if not c:
                        return
                    yield c

        async for piece in pieces():
            buf += piece
            buf = buf.replace(b"\r\n", b"\n")
            while b"\n\n" in buf:
                frame, buf = buf.split(b"\n\n", 1)
                frames["count"] += 1
                event, data = None, []
                for line in frame.split(b"\n"):
                    if line.startswith(b"event:"):
                        event = line[6:].strip().decode()
                    elif line.startswith(b"data:"):
                        data.append(line[5:].strip())
                if event != "message_update" or not data:
                    continue
                try:
                    j = json.loads(b"\n".join(data))
                except ValueError:
                    continue
                if j.get("role") == "user":
                    fut = waiting.get(j.get("message"))
                    if fut and not fut.done():
                        fut.set_result(time.perf_counter())

    rtask = asyncio.create_task(reader())
    samples, misses = [], 0
    try:
        await wait_stable(cmd, prefix, timeout)
        for _ in range(n):
            counter[0] += 1
            content = f"ping {counter[0]}"
            fut = asyncio.get_running_loop().create_future()
            waiting[content] = fut
            t0 = time.perf_counter()
            status, body = await asyncio.wait_for(
                cmd.request("POST", prefix + "/message", {"content": content, "type": "user"}), timeout)
            if status != 200:
                raise RuntimeError(f"POST {prefix}/message -> {status} {body[:200]!r}")
            try:
                t1 = await asyncio.wait_for(fut, timeout)
                samples.append((t1 - t0) * 1000)
            except asyncio.TimeoutError:
                misses += 1
            await wait_stable(cmd, prefix, timeout)
    finally:
        rtask.cancel()
        try:
            await rtask
        except (asyncio.CancelledError, Exception):
            pass
        ev.close()
        cmd.close()
    return samples, misses


async def wait_stable(cmd, prefix, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status, body = await cmd.request("GET", prefix + "/status")
        if status == 200 and json.loads(body).get("status") == "stable":
            return
        await asyncio.sleep(0.005)
    raise RuntimeError(f"agent behind {prefix or 'direct'} not stable within {timeout}s")


# --------------------------------------------------------------------------------------------
# Statistics and the table
# --------------------------------------------------------------------------------------------

def ratio_stats(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"median": round(statistics.median(v), 3), "min": round(min(v), 3),
            "max": round(max(v), 3), "n": len(v)}


def verdict(tid, med):
    _, op, bound = TARGETS[tid]
    return (med >= bound) if op == ">=" else (med <= bound)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="agentapi-proxy release binary")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--sse-samples", type=int, default=20)
    ap.add_argument("--quick", action="store_true",
                    help="1 repetition, 1 s runs, 3 SSE samples, no targets; exit 0 if all paths answered")
    ap.add_argument("--nginx-workers", type=int, default=2)
    ap.add_argument("--extra-nginx-w1", action="store_true",
                    help="also run an nginx with worker_processes 1 (fairness check)")
    ap.add_argument("--out", default=None, help="JSON results path")
    ap.add_argument("--keep-tmp", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.duration, args.sse_samples = 1, 1, 3

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _raise_exit)

    procs = Procs()
    tmp = tempfile.mkdtemp(prefix="agentapi-bench-")
    os.chmod(tmp, 0o755)
    try:
        return run(args, procs, tmp)
    finally:
        procs.cleanup()
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args, procs, tmp):
    log(f"temp dir {tmp}; binary {args.bin}")
    on = Proxy(procs, args.bin, tmp, "auth-on", auth=True)
    off = Proxy(procs, args.bin, tmp, "auth-off", auth=False)
    sid, aport = on.start_session()
    sid_off, aport_off = off.start_session()
    log(f"proxy on :{on.port} session {sid} agent :{aport} (POST /start {on.start_ms:.1f} ms)")
    log(f"proxy off :{off.port} session {sid_off} agent :{aport_off}")
    ngx = Nginx(procs, tmp, aport, sid, workers=args.nginx_workers)
    log(f"nginx :{ngx.port} ({args.nginx_workers} workers)")
    ngx1 = Nginx(procs, tmp, aport, sid, workers=1) if args.extra_nginx_w1 else None

    agent_pids = [on.agent_pid] if on.agent_pid else []
    paths = {
        "direct": (f"http://127.0.0.1:{aport}/status", {"agent": agent_pids}),
        "nginx": (f"{ngx.base}/{sid}/status", {"nginx": ngx.pids(), "agent": agent_pids}),
        "proxy": (f"{on.base}/{sid}/status", {"proxy": [on.proc.pid], "agent": agent_pids}),
        "proxy_noauth": (f"{off.base}/{sid_off}/status",
                         {"proxy": [off.proc.pid], "agent": [off.agent_pid] if off.agent_pid else []}),
    }
    if ngx1:
        paths["nginx_w1"] = (f"{ngx1.base}/{sid}/status", {"nginx": ngx1.pids(), "agent": agent_pids})

    # Sanity: every path answers 200 with the agent's JSON before loading it.
    for name, (url, _) in paths.items():
        st, body = http("GET", url, headers={KEY_HEADER: API_KEY})
        if st != 200 or b'"status"' not in body:
            raise RuntimeError(f"{name}: GET {url} -> {st} {body[:200]!r}")

    results = {"wrk": {k: [] for k in paths}, "sse": {k: [] for k in ("direct", "nginx", "proxy")},
               "proxy_threads": proc_status(on.proc.pid).get("Threads")}
    counter = [0]
    sse_paths = {
        "direct": (("127.0.0.1", aport), ""),
        "nginx": (("127.0.0.1", ngx.port), f"/{sid}"),
        "proxy": (("127.0.0.1", on.port), f"/{sid}"),
    }
    for rep in range(args.reps):
        for name, (url, cpu) in paths.items():
            r = run_wrk(url, args.duration, args.conns, cpu)
            r["rep"] = rep
            results["wrk"][name].append(r)
            log(f"rep {rep + 1}/{args.reps} wrk {name:13s} {r['rps']:9.0f} req/s  "
                f"p50 {r['p50_ms'] and round(r['p50_ms'], 3)} ms  p99 {r['p99_ms'] and round(r['p99_ms'], 3)} ms  non2xx {r['non2xx']}  "
                f"sockerr {r['socket_errors']}  cpu {r['cpu_s']}")
        for name, (hp, prefix) in sse_paths.items():
            samples, misses = asyncio.run(
                sse_samples(hp, prefix, f"127.0.0.1:{aport}", args.sse_samples, counter))
            med = statistics.median(samples) if samples else None
            results["sse"][name].append({"rep": rep, "samples_ms": [round(s, 3) for s in samples],
                                         "median_ms": med, "misses": misses})
            log(f"rep {rep + 1}/{args.reps} sse {name:7s} median {med and round(med, 3)} ms "
                f"({len(samples)} samples, {misses} missed)")
    results["proxy_status_after"] = proc_status(on.proc.pid)

    # Per-repetition ratios.
    def per_rep(fn):
        return [fn(rep) for rep in range(args.reps)]

    W, S = results["wrk"], results["sse"]

    def safe(a, b):
        return a / b if a is not None and b else None

    rows = [
        ("T1", "proxy/nginx", per_rep(lambda i: safe(W["proxy"][i]["rps"], W["nginx"][i]["rps"]))),
        ("T1", "proxy/direct", per_rep(lambda i: safe(W["proxy"][i]["rps"], W["direct"][i]["rps"]))),
        ("T1", "nginx/direct", per_rep(lambda i: safe(W["nginx"][i]["rps"], W["direct"][i]["rps"]))),
        ("T2", "proxy/nginx", per_rep(lambda i: safe(W["proxy"][i]["p99_ms"], W["nginx"][i]["p99_ms"]))),
        ("T2", "proxy/direct", per_rep(lambda i: safe(W["proxy"][i]["p99_ms"], W["direct"][i]["p99_ms"]))),
        ("T3", "proxy/nginx", per_rep(lambda i: safe(S["proxy"][i]["median_ms"], S["nginx"][i]["median_ms"]))),
        ("T3", "proxy/direct", per_rep(lambda i: safe(S["proxy"][i]["median_ms"], S["direct"][i]["median_ms"]))),
        ("T7", "on/off", per_rep(lambda i: safe(W["proxy"][i]["rps"], W["proxy_noauth"][i]["rps"]))),
    ]
    if "nginx_w1" in W:
        rows.append(("T1", "proxy/nginx(1 worker)",
                     per_rep(lambda i: safe(W["proxy"][i]["rps"], W["nginx_w1"][i]["rps"]))))
        rows.append(("T2", "proxy/nginx(1 worker)",
                     per_rep(lambda i: safe(W["proxy"][i]["p99_ms"], W["nginx_w1"][i]["p99_ms"]))))

    table = []
    all_pass = True
    for tid, what, vals in rows:
        st = ratio_stats(vals)
        row = {"id": tid, "ratio": what, **(st or {}), "per_rep": [v and round(v, 3) for v in vals]}
        gated = what in ("proxy/nginx", "on/off")
        if gated and not args.quick and st:
            row["target"] = f"{TARGETS[tid][1]} {TARGETS[tid][2]}"
            row["pass"] = verdict(tid, st["median"])
            all_pass &= row["pass"]
        table.append(row)

    # Absolute context (medians over repetitions).
    def med_of(lst, key):
        v = [x[key] for x in lst if x.get(key) is not None]
        return round(statistics.median(v), 3) if v else None

    absolute = {}
    for name in W:
        absolute[name] = {"rps": med_of(W[name], "rps"), "p50_ms": med_of(W[name], "p50_ms"),
                          "p99_ms": med_of(W[name], "p99_ms"),
                          "cpu_us_per_req": {k: statistics.median([r["cpu_us_per_req"][k] for r in W[name]
                                                                   if "cpu_us_per_req" in r])
                                             for k in W[name][0].get("cpu_us_per_req", {})}}
    for name in S:
        absolute.setdefault("sse_" + name, {})["median_ms"] = med_of(S[name], "median_ms")

    print()
    print(f"agentapi-proxy bench: {args.reps} interleaved repetitions, wrk -t1 -c{args.conns} "
          f"-d{args.duration}s, {args.sse_samples} SSE samples/path/rep, nginx {args.nginx_workers} workers")
    print(f"{'id':3s} {'ratio':24s} {'median':>7s} {'min':>7s} {'max':>7s}  {'target':8s} result")
    for row in table:
        if "median" not in row:
            print(f"{row['id']:3s} {row['ratio']:24s}   (no data)")
            continue
        res = "" if "pass" not in row else ("PASS" if row["pass"] else "FAIL")
        print(f"{row['id']:3s} {row['ratio']:24s} {row['median']:7.3f} {row['min']:7.3f} "
              f"{row['max']:7.3f}  {row.get('target', ''):8s} {res}")
    print()
    print(f"{'path':13s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s}  CPU us/req (median)")
    for name in W:
        a = absolute[name]
        print(f"{name:13s} {a['rps']:9.0f} {a['p50_ms']:8.3f} {a['p99_ms']:8.3f}  "
              + " ".join(f"{k}={v:.1f}" for k, v in a["cpu_us_per_req"].items()))
    print("SSE POST->user frame median ms: "
          + ", ".join(f"{n}={absolute['sse_' + n]['median_ms']}" for n in S))
    print(f"proxy threads: {results['proxy_threads']}; after load: {results['proxy_status_after']}")

    # Did every path answer?
    answered = all(r["requests"] > 0 and r["non2xx"] == 0 for lst in W.values() for r in lst) and \
        all(x["samples_ms"] and x["misses"] == 0 for lst in S.values() for x in lst)
    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": git_info(),
        "binary": {"path": args.bin, "built": time.strftime(
            "%Y-%m-%dT%H:%M:%S%z", time.localtime(os.stat(args.bin).st_mtime))},
        "machine": {"nproc": os.cpu_count(), "loadavg_end": os.getloadavg()},
        "params": {"reps": args.reps, "duration_s": args.duration, "conns": args.conns,
                   "sse_samples": args.sse_samples, "nginx_workers": args.nginx_workers,
                   "quick": args.quick, "agent_env": AGENT_ENV,
                   "t3_definition": "POST /message sent -> the user message's own message_update "
                                    "frame (role user, message == content) on an open /events stream"},
        "table": table, "absolute": absolute, "all_paths_answered": answered,
        "all_targets_pass": None if args.quick else all_pass, "raw": results,
    }
    out = args.out
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            json.dump(doc, f, indent=2)
        log(f"wrote {out}")
    if not answered:
        log("some path did not answer every request (see JSON)")
        return 1
    return 0


def git_info():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--", "src", "Cargo.toml",
                                "Cargo.lock"], capture_output=True, text=True).stdout.strip()
        return {"head": head, "src_dirty": bool(dirty)}
    except OSError:
        return {}


if __name__ == "__main__":
    sys.exit(main())
