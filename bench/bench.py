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

import t10_dashboard
import t12_store

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
# Extra gated rows: (id, ratio) -> (comparator, bound). Memory rows are absolute MB (1e6 bytes).
# Measures `--only` can run by themselves (each on its own proxy, no interleaved loop).
ONLY_CHOICES = {"t4", "t5", "t6", "t10", "t12"}
EXTRA_TARGETS = {
    ("T4", "start p50/floor p50"): ("<=", 2.0),
    ("T4", "N concurrent/floor p50"): ("<=", 20.0),
    ("T5", "idle RSS MB"): ("<=", 15.0),
    ("T5", "N sessions RSS MB"): ("<=", 40.0),
    ("T5", "T1 load RSS MB (peak)"): ("<=", 60.0),
    ("T6", "search/health p50"): ("<=", 5.0),
    ("T8", "GET big proxy/nginx MiB/s"): (">=", 0.8),
    ("T8", "1MiB upload proxy/nginx"): (">=", 0.8),
    ("T8", "big GET RSS growth MB"): ("<=", 10.0),
    ("T10", "page/bare EventSource p95"): ("<=", 1.5),
    # T12 (PostgreSQL vs SQLite, same binary, side by side): loose bounds. A start is a few
    # commits that PostgreSQL fsyncs (SQLite's session writes do not wait for the disk) on top
    # of two process spawns, so the commits must not make it 1.5x slower; a /search miss is
    # one query plus a count over a socket instead of in-process, allowed 2x; the proxy path
    # must not read the store at all, so PG/SQLite throughput is ~1 (0.97 leaves the noise).
    ("T12", "start p50 PG/SQLite"): ("<=", 1.5),
    ("T12", "search miss offset PG/SQLite"): ("<=", 2.0),
    ("T12", "search miss tag PG/SQLite"): ("<=", 2.0),
    ("T12", "search hit PG/SQLite"): ("<=", 2.0),
    ("T12", "proxy req/s PG/SQLite"): (">=", 0.97),
}


def log(*args):
    print("[bench]", *args, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Process bookkeeping: every child gets its own process group; all are killed on exit.
# --------------------------------------------------------------------------------------------

def _kill_group(p):
    """SIGKILL the process group led by p and reap p (bounded)."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


class Procs:
    def __init__(self):
        self.groups = []  # (name, Popen, term_signal, grace_seconds)
        self.extra_pgids = set()  # agent process groups learnt from /debug/env

    def spawn(self, name, argv, term_signal=signal.SIGTERM, grace=20.0, **kw):
        p = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL, **kw)
        self.groups.append((name, p, term_signal, grace))
        return p

    def stop(self, p, sig=signal.SIGTERM, grace=5.0):
        """Stop one spawned group now (sig, then SIGKILL after grace) and forget it."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        _kill_group(p)
        self.groups = [g for g in self.groups if g[1] is not p]

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
            _kill_group(p)
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


def rss_kib(pid):
    """VmRSS of one process (children excluded), KiB; None if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


class RssSampler:
    """Samples one pid's VmRSS every `period` seconds in a thread; .peak / .samples (KiB)."""

    def __init__(self, pid, period=0.02):
        import threading
        self.pid, self.period, self.samples = pid, period, []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            v = rss_kib(self.pid)
            if v is not None:
                self.samples.append(v)
            self._stop.wait(self.period)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)

    @property
    def peak(self):
        return max(self.samples) if self.samples else None


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


# --------------------------------------------------------------------------------------------
# The servers
# --------------------------------------------------------------------------------------------

class FakeGitHub:
    """GitHub's REST API as the proxy uses it for token sign-in (/user, /user/orgs,
    /user/teams), on 127.0.0.1, answering every token as the same user. Counts calls, so the
    run can show the proxy served the load from its token cache."""

    def __init__(self):
        import http.server
        import threading
        fake = self
        self.calls = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                fake.calls += 1
                path = self.path.split("?")[0]
                body = {"/user": {"login": "bench-gh", "id": 4242},
                        "/user/orgs": [], "/user/teams": []}.get(path)
                data = json.dumps(body).encode() if body is not None else b"{}"
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


GITHUB_TOKEN = "ghp_" + "b" * 36


class Proxy:
    def __init__(self, procs, binary, tmp, name, auth, ports=8, session_cfg=None, github=None,
                 persistence=None):
        self.name = name
        self.binary = binary
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir)
        lo, hi = free_port_range(ports)
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
        if session_cfg:
            cfg["session"] = session_cfg
        if persistence:
            cfg["persistence"] = persistence
        if github:
            cfg["auth"]["github"] = {"enabled": True, "base_url": github,
                                     "user_mapping": {"default_role": "admin",
                                                      "default_permissions": ["*"]}}
        self.db_path = os.path.join(self.dir, "data", "agentapi-proxy.db")
        self.config_path = os.path.join(self.dir, "config.json")
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=2)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(self.dir, "proxy.log")
        self.procs = procs
        self.spawn()

    def spawn(self):
        env = dict(os.environ, RUST_LOG="warn")
        for k in list(env):
            if k.startswith("AGENTAPI_PROXY_"):
                del env[k]
        logf = open(self.log_path, "ab")
        self.proc = self.procs.spawn(
            f"proxy-{self.name}",
            [self.binary, "server", "-c", self.config_path, "-p", str(self.port), "--log-format", "json"],
            stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=self.dir,
        )
        logf.close()
        wait_http(self.base + "/health", 30, proc=self.proc, name=f"proxy-{self.name}")

    def stop(self):
        """SIGTERM (the proxy stops its agents), wait, forget the process group."""
        self.procs.stop(self.proc, signal.SIGTERM, 20)

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
            # T8: a 1 MiB body must pass, streamed like the proxy does.
            client_max_body_size 64m;
            proxy_request_buffering off;
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


def run_wrk(url, seconds, conns, cpu_pids, rss_pid=None, header=None):
    """One bounded wrk run. Returns rps, p50/p99 (ms), errors, and CPU seconds per cpu_pids
    (and the peak VmRSS of rss_pid during the run, KiB, when given). `header` replaces the
    API key header."""
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "5s",
            "-H", header or f"{KEY_HEADER}: {API_KEY}", url]
    before = {k: sum(filter(None, (proc_cpu_seconds(p) for p in v))) for k, v in cpu_pids.items()}
    t0 = time.monotonic()
    if rss_pid:
        with RssSampler(rss_pid, 0.1) as smp:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    else:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    wall = time.monotonic() - t0
    after = {k: sum(filter(None, (proc_cpu_seconds(p) for p in v))) for k, v in cpu_pids.items()}
    res = {"url": url, "rc": out.returncode, "wall_s": round(wall, 3)}
    if rss_pid:
        res["rss_peak_kib"] = smp.peak
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
# T4 (start latency), T5 (proxy memory), T6 (/search on a large store), T8 (large bodies)
# --------------------------------------------------------------------------------------------

def _pool(n):
    from concurrent.futures import ThreadPoolExecutor
    return ThreadPoolExecutor(max_workers=max(1, n))


def poll_agent_status(port, deadline_s=10.0):
    """Poll GET /status on an agent's port every ~1 ms until it answers 200."""
    import http.client
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            c.request("GET", "/status")
            r = c.getresponse()
            r.read()
            if r.status == 200:
                return
        except OSError:
            pass
        finally:
            c.close()
        time.sleep(0.001)
    raise RuntimeError(f"echo agent on :{port} did not answer within {deadline_s}s")


def floor_start_ms(procs, binary, tmp):
    """The floor of T4: spawn the echo agent directly and poll it until it answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAPI_PROXY_")}
    env["ECHO_AGENT_BOOT_MS"] = "0"
    t0 = time.perf_counter()
    p = procs.spawn("floor-agent", [binary, "echo-agent", "server", "--port", str(port)],
                    grace=5, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp)
    try:
        poll_agent_status(port)
        return (time.perf_counter() - t0) * 1000
    finally:
        procs.stop(p, signal.SIGTERM, 5)


def proxy_start(px, wait=True, timeout=60):
    """POST /start on px; returns (ms, session_id). Raises on a non-200."""
    t0 = time.perf_counter()
    st, body = http("POST", px.base + "/start" + ("" if wait else "?wait=false"),
                    {"environment": {"ECHO_AGENT_BOOT_MS": "0"}}, headers={KEY_HEADER: API_KEY},
                    timeout=timeout)
    ms = (time.perf_counter() - t0) * 1000
    if st != 200:
        raise RuntimeError(f"proxy-{px.name}: POST /start -> {st} {body[:300]!r}")
    return ms, json.loads(body)["session_id"]


def proxy_delete(px, sid):
    st, body = http("DELETE", f"{px.base}/sessions/{sid}", headers={KEY_HEADER: API_KEY}, timeout=60)
    if st != 200:
        raise RuntimeError(f"proxy-{px.name}: DELETE /sessions/{sid} -> {st} {body[:200]!r}")


def delete_all(px, sids, par=20):
    with _pool(par) as ex:
        list(ex.map(lambda s: proxy_delete(px, s), sids))


def search_total(px, query):
    st, body = http("GET", f"{px.base}/search?{query}", headers={KEY_HEADER: API_KEY}, timeout=30)
    if st != 200:
        raise RuntimeError(f"proxy-{px.name}: GET /search?{query} -> {st} {body[:200]!r}")
    return json.loads(body).get("total")


def measure_t5_sessions(px, n, batch=20, deadline_s=120):
    """T5: idle RSS, then n live sessions (?wait=false in batches, all active), RSS, delete."""
    time.sleep(0.5)
    out = {"idle_kib": rss_kib(px.proc.pid), "sessions": n}
    sids = []
    t0 = time.monotonic()
    with RssSampler(px.proc.pid, 0.05) as smp:
        try:
            with _pool(batch) as ex:
                for i in range(0, n, batch):
                    k = min(batch, n - i)
                    sids += [sid for _, sid in ex.map(lambda _: proxy_start(px, wait=False), range(k))]
            end = time.monotonic() + deadline_s
            while True:
                active = search_total(px, "status=active&limit=1")
                if active >= n:
                    break
                if time.monotonic() > end:
                    raise RuntimeError(f"only {active}/{n} sessions active after {deadline_s}s")
                time.sleep(0.1)
            out["all_active_s"] = round(time.monotonic() - t0, 3)
            time.sleep(0.5)
            out["live_kib"] = rss_kib(px.proc.pid)
        finally:
            delete_all(px, sids)
    out["peak_while_starting_kib"] = smp.peak
    time.sleep(0.3)
    out["after_delete_kib"] = rss_kib(px.proc.pid)
    return out


def parallel_floor_ms(procs, binary, tmp, n):
    """The machine's floor for `n` concurrent starts: `n` echo agents spawned directly at once,
    each polled until it answers; wall time until the last one does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAPI_PROXY_")}
    env["ECHO_AGENT_BOOT_MS"] = "0"
    ports = [free_port() for _ in range(n)]
    spawned = []

    def one(port):
        spawned.append(procs.spawn("floor-agent", [binary, "echo-agent", "server", "--port", str(port)],
                                   grace=5, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env=env, cwd=tmp))
        poll_agent_status(port, deadline_s=60)

    t0 = time.perf_counter()
    try:
        with _pool(n) as ex:
            list(ex.map(one, ports))
        return (time.perf_counter() - t0) * 1000
    finally:
        for p in spawned:
            procs.stop(p, signal.SIGKILL, 5)


def measure_t4(px, procs, binary, tmp, reps, serial, conc, parallel_floor=False):
    """T4: interleaved serial starts (proxy vs floor) and `conc` concurrent starts per repetition
    (with `parallel_floor`, also `conc` echo agents spawned directly at once)."""
    out = []
    for rep in range(reps):
        floors, starts = [], []
        for j in range(serial):
            # Alternate which goes first so neither always runs on a warmer cache.
            order = (0, 1) if j % 2 == 0 else (1, 0)
            for which in order:
                if which == 0:
                    floors.append(floor_start_ms(procs, binary, tmp))
                else:
                    ms, sid = proxy_start(px)
                    starts.append(ms)
                    proxy_delete(px, sid)
        sids = []
        t0 = time.perf_counter()
        with _pool(conc) as ex:
            res = list(ex.map(lambda _: proxy_start(px), range(conc)))
        wall = (time.perf_counter() - t0) * 1000
        sids = [sid for _, sid in res]
        delete_all(px, sids)
        parallel = parallel_floor_ms(procs, binary, tmp, conc) if parallel_floor else None
        r = {"rep": rep, "floor_ms": [round(x, 3) for x in floors],
             "start_ms": [round(x, 3) for x in starts],
             "floor_p50_ms": statistics.median(floors), "start_p50_ms": statistics.median(starts),
             "concurrent": conc, "concurrent_wall_ms": round(wall, 3),
             "concurrent_each_p50_ms": round(statistics.median(ms for ms, _ in res), 3)}
        if parallel is not None:
            r["parallel_floor_wall_ms"] = round(parallel, 3)
        out.append(r)
        log(f"T4 rep {rep + 1}/{reps}: start p50 {r['start_p50_ms']:.2f} ms, floor p50 "
            f"{r['floor_p50_ms']:.2f} ms, {conc} concurrent starts {wall:.0f} ms"
            + (f", {conc} direct spawns at once {parallel:.0f} ms" if parallel is not None else ""))
    return out


def seed_sessions(db_path, n):
    """Insert n finished sessions straight into the (stopped) proxy's SQLite store."""
    import sqlite3
    import uuid
    now = int(time.time() * 1000)
    rows = []
    for i in range(n):
        started = now - (n - i) * 1000  # one per second, the newest a second ago
        rows.append((str(uuid.uuid4()), "bench", "exited", None, None, "{}", "[]", started,
                     started + 500, 0, "agent_exited", "stable", None, 0))
    con = sqlite3.connect(db_path, timeout=10)
    try:
        with con:
            con.executemany(
                "INSERT INTO sessions (id, user_id, status, port, backend_ref, tags, "
                "env_names, started_at, ended_at, exit_code, exit_reason, agent_status, "
                "initial_message, restarts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    finally:
        con.close()


def measure_t6(px, rows, reps, seconds, conns=8):
    px.stop()
    seed_sessions(px.db_path, rows)
    px.spawn()
    total = search_total(px, "limit=100")
    if total != rows:
        raise RuntimeError(f"T6: /search total {total} after seeding {rows} rows")
    st, body = http("GET", px.base + "/search?limit=100", headers={KEY_HEADER: API_KEY})
    got = len(json.loads(body)["sessions"])
    if got != min(100, rows):
        raise RuntimeError(f"T6: /search?limit=100 returned {got} sessions")
    out = []
    cpu = {"proxy": [px.proc.pid]}
    for rep in range(reps):
        s = run_wrk(px.base + "/search?limit=100", seconds, conns, cpu)
        h = run_wrk(px.base + "/health", seconds, conns, cpu)
        out.append({"rep": rep, "search": s, "health": h})
        log(f"T6 rep {rep + 1}/{reps}: /search?limit=100 {s['rps']:.0f} req/s p50 {s['p50_ms']} ms; "
            f"/health {h['rps']:.0f} req/s p50 {h['p50_ms']} ms")
    return {"rows": rows, "search_total": total, "reps": out}


def timed_get(host, port, path, chunk=1 << 20):
    """GET path, read it fully without keeping it; returns (seconds, bytes)."""
    import http.client
    c = http.client.HTTPConnection(host, port, timeout=120)
    try:
        t0 = time.perf_counter()
        c.request("GET", path, headers={KEY_HEADER: API_KEY})
        r = c.getresponse()
        n = 0
        while True:
            b = r.read(chunk)
            if not b:
                break
            n += len(b)
        dt = time.perf_counter() - t0
        if r.status != 200:
            raise RuntimeError(f"GET :{port}{path} -> {r.status}")
        return dt, n
    finally:
        c.close()


def timed_upload(host, port, path, payload):
    """POST a multipart upload (field `file`) of payload; returns seconds."""
    import http.client
    boundary = "benchboundary7MA4YWxkTrZu0gW"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.bin\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + payload + \
        f"\r\n--{boundary}--\r\n".encode()
    c = http.client.HTTPConnection(host, port, timeout=60)
    try:
        c.connect()
        # http.client sends headers and a large body in two writes: without NODELAY, Nagle
        # plus delayed ACK can add ~40 ms on any path.
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.perf_counter()
        c.request("POST", path, body=body, headers={
            KEY_HEADER: API_KEY, "Content-Type": f"multipart/form-data; boundary={boundary}"})
        r = c.getresponse()
        resp = r.read()
        dt = time.perf_counter() - t0
        if r.status != 200:
            raise RuntimeError(f"POST :{port}{path} -> {r.status} {resp[:200]!r}")
        return dt
    finally:
        c.close()


def measure_t8(on, ngx, sid, aport, reps, big_kib, uploads):
    """T8: a big streamed GET /messages and a 1 MiB multipart upload, direct/nginx/proxy."""
    st, body = http("POST", f"{on.base}/{sid}/message",
                    {"content": f"/fake big {big_kib}", "type": "user"},
                    headers={KEY_HEADER: API_KEY}, timeout=60)
    if st != 200:
        raise RuntimeError(f"T8: POST /message /fake big -> {st} {body[:200]!r}")
    end = time.monotonic() + 60
    while True:
        st, body = http("GET", f"{on.base}/{sid}/status", headers={KEY_HEADER: API_KEY})
        if st == 200 and json.loads(body).get("status") == "stable":
            break
        if time.monotonic() > end:
            raise RuntimeError("T8: agent not stable 60 s after /fake big")
        time.sleep(0.02)
    paths = {"direct": ("127.0.0.1", aport, ""), "nginx": ("127.0.0.1", ngx.port, f"/{sid}"),
             "proxy": ("127.0.0.1", on.port, f"/{sid}")}
    payload = os.urandom(1 << 20)
    pid = on.proc.pid
    out = {"big_kib": big_kib, "reps": []}
    for rep in range(reps):
        r = {"rep": rep, "get": {}, "upload": {}}
        for name, (h, p, pre) in paths.items():
            before = rss_kib(pid)
            with RssSampler(pid, 0.01) as smp:
                dt, n = timed_get(h, p, pre + "/messages")
            r["get"][name] = {"s": round(dt, 4), "bytes": n, "mib_s": round(n / dt / 2**20, 1),
                              "proxy_rss_before_kib": before, "proxy_rss_peak_kib": smp.peak,
                              "proxy_rss_after_kib": rss_kib(pid)}
            if n < big_kib * 1024:
                raise RuntimeError(f"T8: {name} GET /messages returned {n} bytes < {big_kib} KiB")
        for name, (h, p, pre) in paths.items():
            before = rss_kib(pid)
            with RssSampler(pid, 0.01) as smp:
                times = [timed_upload(h, p, pre + "/upload", payload) for _ in range(uploads)]
            r["upload"][name] = {"s": [round(t, 5) for t in times], "median_s": statistics.median(times),
                                 "proxy_rss_before_kib": before, "proxy_rss_peak_kib": smp.peak}
        out["reps"].append(r)
        g, u = r["get"], r["upload"]
        log(f"T8 rep {rep + 1}/{reps}: GET /messages ({g['proxy']['bytes'] / 2**20:.1f} MiB) MiB/s "
            + " ".join(f"{k}={v['mib_s']}" for k, v in g.items())
            + f"; proxy RSS {g['proxy']['proxy_rss_before_kib']}->{g['proxy']['proxy_rss_peak_kib']} KiB; "
            + "1 MiB upload ms " + " ".join(f"{k}={v['median_s'] * 1000:.2f}" for k, v in u.items()))
    return out


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
    ap.add_argument("--t4-serial", type=int, default=5,
                    help="T4: serial starts (and floor spawns) per repetition")
    ap.add_argument("--t4-concurrent", type=int, default=100, help="T4: concurrent starts per repetition")
    ap.add_argument("--t4-parallel-floor", action="store_true",
                    help="T4: also time as many echo agents spawned directly at once (the machine's "
                         "floor for concurrent starts), and report the concurrent starts against it")
    ap.add_argument("--t5-sessions", type=int, default=200, help="T5: live sessions")
    ap.add_argument("--t6-rows", type=int, default=10000, help="T6: sessions seeded into the store")
    ap.add_argument("--t6-duration", type=int, default=5, help="T6: seconds per wrk run (-c8)")
    ap.add_argument("--t8-kib", type=int, default=51200, help="T8: size of the big reply (KiB)")
    ap.add_argument("--t8-uploads", type=int, default=5, help="T8: 1 MiB uploads per path per repetition")
    ap.add_argument("--t10-messages", type=int, default=25,
                    help="T10: replies (4 frames each) per repetition in the dashboard page")
    ap.add_argument("--t12-rows", type=int, default=2000,
                    help="T12: ended sessions seeded into both stores (SQLite and PostgreSQL)")
    ap.add_argument("--t12-starts", type=int, default=15,
                    help="T12: serial POST /start (then DELETE) per proxy per repetition")
    ap.add_argument("--t12-searches", type=int, default=100,
                    help="T12: /search requests per kind (miss offset, miss tag, hit) per proxy per repetition")
    ap.add_argument("--t12-duration", type=int, default=10, help="T12: seconds per wrk run")
    ap.add_argument("--t12-settle", type=float, default=11.0,
                    help="T12: seconds waited before each PostgreSQL counter reading (a backend may "
                         "hold its statistics up to 10 s)")
    ap.add_argument("--t12-pg-setting", action="append", metavar="NAME=VALUE",
                    help="T12: a PostgreSQL setting (-c) for the throwaway cluster; repeatable")
    ap.add_argument("--skip-extra", action="store_true", help="only T1/T2/T3/T7")
    ap.add_argument("--only", default=None, metavar="IDS",
                    help="only these of the measures that need no interleaved loop, comma-separated "
                         f"({','.join(sorted(ONLY_CHOICES))}); skips T1/T2/T3/T7/T8")
    ap.add_argument("--out", default=None, help="JSON results path")
    ap.add_argument("--keep-tmp", action="store_true")
    args = ap.parse_args()
    if args.only is not None:
        args.only = {part.strip().lower() for part in args.only.split(",") if part.strip()}
        unknown = args.only - ONLY_CHOICES
        if unknown or not args.only:
            ap.error(f"--only takes some of {','.join(sorted(ONLY_CHOICES))}, not {sorted(unknown)}")
    if args.quick:
        args.reps, args.duration, args.sse_samples = 1, 1, 3
        args.t4_serial, args.t4_concurrent, args.t5_sessions = 3, 5, 5
        args.t6_rows, args.t6_duration, args.t8_kib, args.t8_uploads = 100, 1, 2048, 2
        args.t10_messages = 3
        args.t12_rows, args.t12_starts, args.t12_searches = 200, 3, 20
        args.t12_duration, args.t12_settle = 1, 2.0

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
    if args.only is not None:
        return run_only(args, procs, tmp)
    github = FakeGitHub()
    on = Proxy(procs, args.bin, tmp, "auth-on", auth=True, github=github.base)
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
        "proxy_github": (f"{on.base}/{sid}/status", {"proxy": [on.proc.pid], "agent": agent_pids}),
    }
    headers_for = {"proxy_github": f"Authorization: Bearer {GITHUB_TOKEN}"}
    if ngx1:
        paths["nginx_w1"] = (f"{ngx1.base}/{sid}/status", {"nginx": ngx1.pids(), "agent": agent_pids})

    # Sanity: every path answers 200 with the agent's JSON before loading it.
    for name, (url, _) in paths.items():
        key, _, value = headers_for.get(name, f"{KEY_HEADER}: {API_KEY}").partition(": ")
        st, body = http("GET", url, headers={key: value})
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
            r = run_wrk(url, args.duration, args.conns, cpu,
                        rss_pid=on.proc.pid if name == "proxy" else None,
                        header=headers_for.get(name))
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
    results["github_calls"] = github.calls
    log(f"fake GitHub answered {github.calls} calls for all GitHub-token runs (the cache served the rest)")

    # T8, T5, T4, T6: after the interleaved loop, so the big reply and the extra proxies do not
    # disturb T1-T3. A measure that fails is recorded and makes the run exit 1.
    extra_errors = {}

    def attempt(tid, fn):
        if args.skip_extra:
            return None
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            log(f"{tid} failed: {e!r}")
            extra_errors[tid] = repr(e)
            return None

    results["t8"] = attempt("T8", lambda: measure_t8(on, ngx, sid, aport, args.reps, args.t8_kib,
                                                      args.t8_uploads))
    n_ports = max(args.t5_sessions, args.t4_concurrent) + 20
    sess = attempt("T4/T5 proxy", lambda: Proxy(
        procs, args.bin, tmp, "sessions", auth=True, ports=n_ports,
        session_cfg={"max_sessions": n_ports + 50}))
    if sess:
        results["t5"] = attempt("T5", lambda: measure_t5_sessions(sess, args.t5_sessions))
        results["t4"] = attempt("T4", lambda: measure_t4(sess, procs, args.bin, tmp, args.reps,
                                                          args.t4_serial, args.t4_concurrent,
                                                          args.t4_parallel_floor))
        sess.stop()
    if not args.skip_extra:
        t6 = attempt("T6 proxy", lambda: Proxy(procs, args.bin, tmp, "store", auth=True,
                                               session_cfg={"retain_finished_seconds": 30 * 86400}))
        if t6:
            results["t6"] = attempt("T6", lambda: measure_t6(t6, args.t6_rows, args.reps, args.t6_duration))
            t6.stop()
        if t10_dashboard.chromium_installed():
            results["t10"] = attempt("T10", lambda: run_t10(args, procs, tmp))
        else:
            log("T10 skipped: no Chromium (apt-get install chromium chromium-driver)")
        if t12_store.postgres_installed():
            results["t12"] = attempt("T12", lambda: run_t12(args, procs, tmp))
            if (results["t12"] or {}).get("request_errors"):
                extra_errors["T12 requests"] = "; ".join(results["t12"]["request_errors"])
        else:
            log("T12 skipped: no PostgreSQL (apt-get install postgresql)")

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
        ("T7", "GitHub token (cached)/off",
         per_rep(lambda i: safe(W["proxy_github"][i]["rps"], W["proxy_noauth"][i]["rps"]))),
    ]
    if "nginx_w1" in W:
        rows.append(("T1", "proxy/nginx(1 worker)",
                     per_rep(lambda i: safe(W["proxy"][i]["rps"], W["nginx_w1"][i]["rps"]))))
        rows.append(("T2", "proxy/nginx(1 worker)",
                     per_rep(lambda i: safe(W["proxy"][i]["p99_ms"], W["nginx_w1"][i]["p99_ms"]))))

    rows += extra_rows(args, results)

    table = []
    all_pass = True
    for tid, what, vals in rows:
        st = ratio_stats(vals)
        label = what.replace("N ", f"{args.t4_concurrent} ") if tid == "T4" else \
            what.replace("N ", f"{args.t5_sessions} ", 1) if tid == "T5" else what
        row = {"id": tid, "ratio": label, **(st or {}), "per_rep": [v and round(v, 3) for v in vals]}
        gated = what in ("proxy/nginx", "on/off", "GitHub token (cached)/off")
        if gated and not args.quick and st:
            row["target"] = f"{TARGETS[tid][1]} {TARGETS[tid][2]}"
            row["pass"] = verdict(tid, st["median"])
            all_pass &= row["pass"]
        if (tid, what) in EXTRA_TARGETS and not args.quick and st:
            op, bound = EXTRA_TARGETS[(tid, what)]
            row["target"] = f"{op} {bound:g}"
            row["pass"] = st["median"] >= bound if op == ">=" else st["median"] <= bound
            all_pass &= row["pass"]
        if tid in extra_errors or f"{tid} proxy" in extra_errors or (
                tid in ("T4", "T5") and "T4/T5 proxy" in extra_errors):
            row["error"] = True
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
    print(f"{'id':3s} {'ratio':28s} {'median':>8s} {'min':>8s} {'max':>8s}  {'target':8s} result")
    for row in table:
        if "median" not in row:
            print(f"{row['id']:3s} {row['ratio']:28s}   (no data{', error' if row.get('error') else ''})")
            continue
        res = "" if "pass" not in row else ("PASS" if row["pass"] else "FAIL")
        print(f"{row['id']:3s} {row['ratio']:28s} {row['median']:8.3f} {row['min']:8.3f} "
              f"{row['max']:8.3f}  {row.get('target', ''):8s} {res}")
    print()
    print(f"{'path':13s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s}  CPU us/req (median)")
    for name in W:
        a = absolute[name]
        print(f"{name:13s} {a['rps']:9.0f} {a['p50_ms']:8.3f} {a['p99_ms']:8.3f}  "
              + " ".join(f"{k}={v:.1f}" for k, v in a["cpu_us_per_req"].items()))
    print("SSE POST->user frame median ms: "
          + ", ".join(f"{n}={absolute['sse_' + n]['median_ms']}" for n in S))
    print(f"proxy threads: {results['proxy_threads']}; after load: {results['proxy_status_after']}")
    for line in extra_context(results):
        print(line)
    for tid, err in extra_errors.items():
        print(f"{tid}: ERROR {err}")

    # Did every path answer?
    answered = all(r["requests"] > 0 and r["non2xx"] == 0 for lst in W.values() for r in lst) and \
        all(x["samples_ms"] and x["misses"] == 0 for lst in S.values() for x in lst) and \
        not extra_errors and all(r["search"]["requests"] > 0 and r["search"]["non2xx"] == 0 and
                                 r["health"]["requests"] > 0 and r["health"]["non2xx"] == 0
                                 for r in (results.get("t6") or {}).get("reps", []))
    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": git_info(),
        "binary": {"path": args.bin, "built": time.strftime(
            "%Y-%m-%dT%H:%M:%S%z", time.localtime(os.stat(args.bin).st_mtime))},
        "machine": {"nproc": os.cpu_count(), "loadavg_end": os.getloadavg()},
        "params": {"reps": args.reps, "duration_s": args.duration, "conns": args.conns,
                   "sse_samples": args.sse_samples, "nginx_workers": args.nginx_workers,
                   "quick": args.quick, "agent_env": AGENT_ENV,
                   "t4_serial": args.t4_serial, "t4_concurrent": args.t4_concurrent,
                   "t5_sessions": args.t5_sessions, "t6_rows": args.t6_rows,
                   "t6_duration_s": args.t6_duration, "t8_kib": args.t8_kib,
                   "t8_uploads": args.t8_uploads,
                   "t3_definition": "POST /message sent -> the user message's own message_update "
                                    "frame (role user, message == content) on an open /events stream"},
        "extra_errors": extra_errors,
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


def run_only(args, procs, tmp):
    """`--only`: just the chosen T4/T5/T6/T10/T12 measures, each on its own proxy, then their table."""
    results, errors = {"wrk": {}}, {}

    def attempt(tid, fn):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            log(f"{tid} failed: {e!r}")
            errors[tid] = repr(e)
            return None

    if args.only & {"t4", "t5"}:
        n_ports = max(args.t5_sessions if "t5" in args.only else 0,
                      args.t4_concurrent if "t4" in args.only else 0) + 20
        sess = attempt("T4/T5 proxy", lambda: Proxy(
            procs, args.bin, tmp, "sessions", auth=True, ports=n_ports,
            session_cfg={"max_sessions": n_ports + 50}))
        if sess:
            if "t5" in args.only:
                results["t5"] = attempt("T5", lambda: measure_t5_sessions(sess, args.t5_sessions))
            if "t4" in args.only:
                results["t4"] = attempt("T4", lambda: measure_t4(
                    sess, procs, args.bin, tmp, args.reps, args.t4_serial, args.t4_concurrent,
                    args.t4_parallel_floor))
            sess.stop()
    if "t6" in args.only:
        t6 = attempt("T6 proxy", lambda: Proxy(procs, args.bin, tmp, "store", auth=True,
                                               session_cfg={"retain_finished_seconds": 30 * 86400}))
        if t6:
            results["t6"] = attempt("T6", lambda: measure_t6(t6, args.t6_rows, args.reps,
                                                              args.t6_duration))
            t6.stop()
    if "t10" in args.only:
        results["t10"] = attempt("T10", lambda: run_t10(args, procs, tmp))
    if "t12" in args.only:
        results["t12"] = attempt("T12", lambda: run_t12(args, procs, tmp))
        if (results["t12"] or {}).get("request_errors"):
            errors["T12 requests"] = "; ".join(results["t12"]["request_errors"])

    table, all_pass = [], True
    print()
    print(f"agentapi-proxy bench --only {','.join(sorted(args.only))}: {args.reps} repetitions")
    print(f"{'id':3s} {'ratio':28s} {'median':>8s} {'min':>8s} {'max':>8s}  {'target':8s} result")
    for tid, what, vals in extra_rows(args, results):
        st = ratio_stats(vals)
        label = what.replace("N ", f"{args.t4_concurrent} ") if tid == "T4" else \
            what.replace("N ", f"{args.t5_sessions} ", 1) if tid == "T5" else what
        row = {"id": tid, "ratio": label, **(st or {}), "per_rep": [v and round(v, 3) for v in vals]}
        if (tid, what) in EXTRA_TARGETS and not args.quick and st:
            op, bound = EXTRA_TARGETS[(tid, what)]
            row["target"] = f"{op} {bound:g}"
            row["pass"] = st["median"] >= bound if op == ">=" else st["median"] <= bound
            all_pass &= row["pass"]
        table.append(row)
        if not st:
            print(f"{tid:3s} {label:28s}   (no data)")
            continue
        res = "" if "pass" not in row else ("PASS" if row["pass"] else "FAIL")
        print(f"{tid:3s} {label:28s} {st['median']:8.3f} {st['min']:8.3f} {st['max']:8.3f}  "
              f"{row.get('target', ''):8s} {res}")
    for line in extra_context(results):
        print(line)
    for tid, err in errors.items():
        print(f"{tid}: ERROR {err}")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git": git_info(),
                       "binary": {"path": args.bin}, "only": sorted(args.only),
                       "machine": {"nproc": os.cpu_count(), "loadavg_end": os.getloadavg()},
                       "extra_errors": errors, "table": table,
                       "all_targets_pass": None if args.quick else all_pass, "raw": results},
                      f, indent=2)
        log(f"wrote {args.out}")
    return 1 if errors else 0


def run_t10(args, procs, tmp):
    """T10 on its own proxy with authentication off (the page then needs no sign-in)."""
    px = Proxy(procs, args.bin, tmp, "dashboard", auth=False)
    try:
        return t10_dashboard.measure_t10(px, procs, tmp, args.reps, args.t10_messages, log)
    finally:
        px.stop()


def run_t12(args, procs, tmp):
    """T12: a throwaway PostgreSQL and two proxies (SQLite, PostgreSQL), see t12_store.py."""
    out = t12_store.measure_t12(args, procs, tmp, log, sys.modules[__name__])
    if out.get("request_errors"):
        log(f"T12: requests failed: {out['request_errors']}")
    return out


def extra_rows(args, results):
    """Table rows (id, label, per-repetition values) for T4, T5, T6, T8, T10, T12."""
    rows = []
    mb = lambda kib: kib * 1024 / 1e6 if kib is not None else None  # noqa: E731

    def safe(a, b):
        return a / b if a is not None and b else None

    t4 = results.get("t4") or []
    if t4 or "t4" in results:
        rows.append(("T4", "start p50/floor p50", [safe(r["start_p50_ms"], r["floor_p50_ms"]) for r in t4]))
        rows.append(("T4", "N concurrent/floor p50",
                     [safe(r["concurrent_wall_ms"], r["floor_p50_ms"]) for r in t4]))
        if any("parallel_floor_wall_ms" in r for r in t4):
            rows.append(("T4", "N concurrent/N direct at once",
                         [safe(r["concurrent_wall_ms"], r.get("parallel_floor_wall_ms")) for r in t4]))
    if "t5" in results:
        t5 = results.get("t5") or {}
        rows.append(("T5", "idle RSS MB", [mb(t5.get("idle_kib"))]))
        rows.append(("T5", "N sessions RSS MB", [mb(t5.get("live_kib"))]))
    load = [r.get("rss_peak_kib") for r in results["wrk"].get("proxy", [])]
    if any(load) and not args.skip_extra:
        rows.append(("T5", "T1 load RSS MB (peak)", [mb(x) for x in load]))
    if "t6" in results:
        t6 = (results.get("t6") or {}).get("reps", [])
        rows.append(("T6", "search/health p50", [safe(r["search"]["p50_ms"], r["health"]["p50_ms"]) for r in t6]))
    if "t8" in results:
        t8 = (results.get("t8") or {}).get("reps", [])
        rows.append(("T8", "GET big proxy/nginx MiB/s",
                     [safe(r["get"]["proxy"]["mib_s"], r["get"]["nginx"]["mib_s"]) for r in t8]))
        rows.append(("T8", "GET big proxy/direct MiB/s",
                     [safe(r["get"]["proxy"]["mib_s"], r["get"]["direct"]["mib_s"]) for r in t8]))
        # Throughput ratio = inverse of the time ratio.
        rows.append(("T8", "1MiB upload proxy/nginx",
                     [safe(r["upload"]["nginx"]["median_s"], r["upload"]["proxy"]["median_s"]) for r in t8]))
        rows.append(("T8", "big GET RSS growth MB",
                     [mb(r["get"]["proxy"]["proxy_rss_peak_kib"] - r["get"]["proxy"]["proxy_rss_before_kib"])
                      if r["get"]["proxy"]["proxy_rss_peak_kib"] is not None else None for r in t8]))
    if "t10" in results:
        rows += t10_dashboard.t10_rows(results)
    if "t12" in results:
        rows += t12_store.t12_rows(results)
    return rows


def extra_context(results):
    """Absolute figures behind T4, T5, T6, T8, T10, T12 (context lines for the printed table)."""
    out = []
    t4 = results.get("t4") or []
    if t4:
        med = lambda k: round(statistics.median(r[k] for r in t4), 2)  # noqa: E731
        out.append(f"T4 ms (median of reps): POST /start p50 {med('start_p50_ms')}, floor p50 "
                   f"{med('floor_p50_ms')}, {t4[0]['concurrent']} concurrent starts wall "
                   f"{med('concurrent_wall_ms')} (each p50 {med('concurrent_each_p50_ms')})"
                   + (f"; {t4[0]['concurrent']} echo agents spawned directly at once "
                      f"{med('parallel_floor_wall_ms')}" if "parallel_floor_wall_ms" in t4[0] else ""))
    t5 = results.get("t5")
    if t5:
        out.append(f"T5 proxy VmRSS KiB: idle {t5['idle_kib']}, {t5['sessions']} sessions {t5['live_kib']} "
                   f"(peak while starting {t5['peak_while_starting_kib']}, all active after "
                   f"{t5.get('all_active_s')} s), after deleting them {t5['after_delete_kib']}")
    t6 = (results.get("t6") or {}).get("reps")
    if t6:
        med = lambda a, k: round(statistics.median(r[a][k] for r in t6), 3)  # noqa: E731
        out.append(f"T6 ({results['t6']['rows']} rows, wrk -c8): /search?limit=100 {med('search', 'rps'):.0f} "
                   f"req/s p50 {med('search', 'p50_ms')} ms; /health {med('health', 'rps'):.0f} req/s p50 "
                   f"{med('health', 'p50_ms')} ms")
    t8 = (results.get("t8") or {}).get("reps")
    if t8:
        g = {k: round(statistics.median(r["get"][k]["mib_s"] for r in t8), 1) for k in t8[0]["get"]}
        u = {k: round(statistics.median(r["upload"][k]["median_s"] for r in t8) * 1000, 2) for k in t8[0]["upload"]}
        p = t8[-1]["get"]["proxy"]
        up = t8[-1]["upload"]["proxy"]
        out.append(f"T8 GET /messages ({p['bytes'] / 2**20:.1f} MiB) MiB/s: "
                   + ", ".join(f"{k}={v}" for k, v in g.items())
                   + f"; 1 MiB upload ms: " + ", ".join(f"{k}={v}" for k, v in u.items()))
        out.append(f"T8 proxy VmRSS KiB (last rep): GET before {p['proxy_rss_before_kib']} peak "
                   f"{p['proxy_rss_peak_kib']} after {p['proxy_rss_after_kib']}; upload before "
                   f"{up['proxy_rss_before_kib']} peak {up['proxy_rss_peak_kib']}")
    out += t10_dashboard.t10_context(results)
    out += t12_store.t12_context(results)
    return out


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
