"""T10 (performance.md): agent frame -> text in the dashboard's Session page, against a bare
EventSource listener on the same stream in the same headless Chromium.

One session on a proxy; the bench reads the agent's own /events directly (its port, a raw
socket in a thread) and stamps each agent frame with the wall clock as it arrives: that is
"the agent's frame". Chromium (Debian's, driven over WebDriver by chromedriver) opens the
Session page /ui/sessions/<id>; a script injected through WebDriver then records, with
`performance.timeOrigin + performance.now()` (the same wall clock), when each version of the
agent's reply appears in the page's conversation (a MutationObserver: no polling) and when
a bare `EventSource('/<id>/events')`, opened in the same page, gets the same frame. The bench
posts messages to the session and the echo agent streams each reply as 4 growing frames.

latency = browser time of (text in page | bare listener event) - bench time of the frame.
Both share the one clock offset between Python and Chromium; the bench checks that offset
(Chromium's clock read between two Python readings must fall between them) and reports the
page-bare difference per frame too, which needs no clock at all.

Per repetition: p50 and p95 of both; the gated ratio is page p95 / bare p95 (target <= 1.5).
Stdlib only.
"""

import asyncio
import json
import os
import socket
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
AGENT_ENV = {"ECHO_AGENT_BOOT_MS": "0", "ECHO_AGENT_REPLY_MS": "200"}
PADDING = "the quick brown fox jumps over the lazy dog " * 4

RECORDER = r"""
const sessionId = arguments[0];
const now = () => performance.timeOrigin + performance.now();
const conversation = document.querySelector('#conversation');
const record = window.t10 = {page: [], bare: [], fetch: [], bareOpen: false};
new MutationObserver((mutations) => {
  const t = now();
  const touched = new Set();
  for (const m of mutations) {
    const nodes = m.target === conversation ? [...m.addedNodes] : [m.target];
    for (const node of nodes) {
      const el = node.nodeType === 1 ? node : node.parentElement;
      const item = el && el.closest('li.msg-agent');
      if (item) touched.add(item.querySelector('.text'));
    }
  }
  for (const text of touched) if (text) record.page.push([text.textContent, t]);
}).observe(conversation, {subtree: true, childList: true, characterData: true});
const bare = new EventSource(`/${encodeURIComponent(sessionId)}/events`);
bare.onopen = () => { record.bareOpen = true; };
bare.addEventListener('message_update', (event) => {
  const t = now();
  const data = JSON.parse(event.data);
  if (data.role === 'agent') record.bare.push([data.message, t]);
});
// Context, not gated: the same stream read with fetch (as the page reads it) but no DOM.
(async () => {
  const response = await fetch(`/${encodeURIComponent(sessionId)}/events`, {headers: {Accept: 'text/event-stream'}});
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    const t = now();
    buffer += decoder.decode(value, {stream: true});
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame.split('\n').find((line) => line.startsWith('data:'));
      if (!frame.startsWith('event: message_update') || !data) continue;
      const message = JSON.parse(data.slice(5));
      if (message.role === 'agent') record.fetch.push([message.message, t]);
    }
  }
})();
"""


def _request(method, url, body=None, timeout=60):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Chromium:
    """chromedriver + one headless Chromium with a fresh profile; W3C WebDriver over HTTP."""

    def __init__(self, procs, tmp):
        self.port = _free_port()
        self.proc = procs.spawn("chromedriver", [CHROMEDRIVER, f"--port={self.port}"],
                                grace=5, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.root = f"http://127.0.0.1:{self.port}"
        end = time.monotonic() + 20
        while True:
            try:
                st, body = _request("GET", self.root + "/status", timeout=2)
                if st == 200 and json.loads(body)["value"]["ready"]:
                    break
            except OSError:
                pass
            if time.monotonic() > end:
                raise RuntimeError("chromedriver did not answer within 20 s")
            time.sleep(0.05)
        profile = os.path.join(tmp, "chromium-profile")
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={profile}"]
        st, body = _request("POST", self.root + "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}})
        answer = json.loads(body)
        if st != 200:
            raise RuntimeError(f"chromedriver refused a session: {answer}")
        self.session = f"{self.root}/session/{answer['value']['sessionId']}"
        self.version = answer["value"].get("capabilities", {}).get("browserVersion")

    def command(self, method, path, body=None):
        st, raw = _request(method, self.session + path, body)
        answer = json.loads(raw)
        if st != 200:
            raise RuntimeError(f"WebDriver {path}: {answer.get('value')}")
        return answer["value"]

    def goto(self, url):
        self.command("POST", "/url", {"url": url})

    def run(self, script, *args):
        return self.command("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait_for(self, what, script, *args, deadline_s=30):
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            value = self.run(script, *args)
            if value:
                return value
            time.sleep(0.05)
        raise RuntimeError(f"T10: {what} within {deadline_s}s")

    def quit(self):
        try:
            _request("DELETE", self.session, timeout=10)
        except OSError:
            pass


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class DirectListener:
    """The agent's own /events on its port, read in a thread; wall-clock time (ms) of the
    first frame carrying each agent message text."""

    def __init__(self, port):
        self.frames = {}
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                          "Accept: text/event-stream\r\n\r\n".encode())
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        raw, head_done, chunked, body = b"", False, False, b""
        try:
            while True:
                piece = self.sock.recv(65536)
                t = time.time() * 1000
                if not piece:
                    return
                raw += piece
                if not head_done:
                    if b"\r\n\r\n" not in raw:
                        continue
                    head, raw = raw.split(b"\r\n\r\n", 1)
                    chunked = b"transfer-encoding: chunked" in head.lower()
                    head_done = True
                if chunked:
                    while b"\r\n" in raw:
                        size_line, rest = raw.split(b"\r\n", 1)
                        size = int(size_line.split(b";")[0].strip() or b"0", 16)
                        if len(rest) < size + 2:
                            break
                        body += rest[:size]
                        raw = rest[size + 2:]
                else:
                    body, raw = body + raw, b""
                body = body.replace(b"\r\n", b"\n")
                while b"\n\n" in body:
                    frame, body = body.split(b"\n\n", 1)
                    self._frame(frame, t)
        except OSError:
            return

    def _frame(self, frame, t):
        event, data = None, []
        for line in frame.split(b"\n"):
            if line.startswith(b"event:"):
                event = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data.append(line[5:].lstrip())
        if event != "message_update" or not data:
            return
        try:
            message = json.loads(b"\n".join(data))
        except ValueError:
            return
        if message.get("role") != "agent":
            return
        with self.cond:
            self.frames.setdefault(message.get("message"), t)
            self.cond.notify_all()

    def wait_text(self, text, deadline_s=10):
        with self.cond:
            if not self.cond.wait_for(lambda: text in self.frames, timeout=deadline_s):
                raise RuntimeError(f"T10: the agent never sent {text[:40]!r}")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _percentile(values, q):
    ordered = sorted(values)
    if not ordered:
        return None
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def clock_check(browser, n=20):
    """How far Chromium's wall clock falls outside Python's around the same instant (ms; 0 =
    always within the bracket), and the bracket's median width."""
    worst, widths = 0.0, []
    for _ in range(n):
        before = time.time() * 1000
        seen = browser.run("return performance.timeOrigin + performance.now();")
        after = time.time() * 1000
        worst = max(worst, before - seen, seen - after)
        widths.append(after - before)
    return round(worst, 3), round(statistics.median(widths), 3)


def _wait_stable(base, sid, deadline_s=10):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        st, body = _request("GET", f"{base}/{sid}/status", timeout=5)
        if st == 200 and json.loads(body).get("status") == "stable":
            return
        time.sleep(0.01)
    raise RuntimeError("T10: the agent did not become stable")


def measure_t10(px, procs, tmp, reps, messages, log):
    """T10 on proxy `px` (auth off): per repetition, `messages` replies of 4 frames each."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            raise RuntimeError(f"T10 needs {path} (apt-get install chromium chromium-driver)")
    st, body = _request("POST", px.base + "/start", {"environment": AGENT_ENV})
    if st != 200:
        raise RuntimeError(f"T10: POST /start -> {st} {body[:200]!r}")
    started = json.loads(body)
    sid, aport = started["session_id"], int(started["port"])
    direct = DirectListener(aport)
    browser = Chromium(procs, tmp)
    try:
        browser.goto(f"{px.base}/ui/sessions/{sid}")
        browser.wait_for("the page's composer was not ready",
                         "const b = document.querySelector('#composer-send'); return !!b && !b.disabled;")
        browser.run(RECORDER, sid)
        browser.wait_for("the bare EventSource did not open", "return window.t10.bareOpen;")
        offset_ms, bracket_ms = clock_check(browser)
        log(f"T10: Chromium {browser.version}; its clock within {offset_ms} ms of ours "
            f"(bracket {bracket_ms} ms)")
        out = {"reps": [], "messages": messages, "frames_per_reply": 4,
               "reply_ms": int(AGENT_ENV["ECHO_AGENT_REPLY_MS"]), "clock_outside_ms": offset_ms,
               "clock_bracket_ms": bracket_ms, "chromium": browser.version}
        for rep in range(reps):
            texts = []
            for i in range(messages):
                content = f"t10 {rep}-{i} {PADDING}".strip()
                reply = f"echo: {content}"
                st, body = _request("POST", f"{px.base}/{sid}/message",
                                    {"content": content, "type": "user"}, timeout=10)
                if st != 200:
                    raise RuntimeError(f"T10: POST /message -> {st} {body[:200]!r}")
                direct.wait_text(reply)
                _wait_stable(px.base, sid)
                texts.append(reply)
            browser.wait_for("the page did not show the last reply",
                             "return window.t10.page.some(([t]) => t === arguments[0]) && "
                             "window.t10.bare.some(([t]) => t === arguments[0]);", texts[-1])
            record = browser.run("const r = window.t10; const out = {page: r.page, bare: r.bare, "
                                 "fetch: r.fetch}; r.page = []; r.bare = []; r.fetch = []; return out;")
            first = lambda pairs: {text: t for text, t in reversed(pairs)}  # noqa: E731
            page, bare, fetched = first(record["page"]), first(record["bare"]), first(record["fetch"])
            wanted = set(texts)
            page_ms, bare_ms, fetch_ms, diff_ms, missed = [], [], [], [], 0
            with direct.lock:
                frames = {k: v for k, v in direct.frames.items()
                          if any(k and w.startswith(k) for w in wanted)}
            for text, t_agent in frames.items():
                if text not in page or text not in bare:
                    missed += 1
                    continue
                page_ms.append(page[text] - t_agent)
                bare_ms.append(bare[text] - t_agent)
                diff_ms.append(page[text] - bare[text])
                if text in fetched:
                    fetch_ms.append(fetched[text] - t_agent)
            r = {"rep": rep, "frames": len(page_ms), "missed": missed,
                 "page_p50_ms": _percentile(page_ms, 0.5), "page_p95_ms": _percentile(page_ms, 0.95),
                 "bare_p50_ms": _percentile(bare_ms, 0.5), "bare_p95_ms": _percentile(bare_ms, 0.95),
                 "fetch_p50_ms": _percentile(fetch_ms, 0.5), "fetch_p95_ms": _percentile(fetch_ms, 0.95),
                 "page_minus_bare_p50_ms": _percentile(diff_ms, 0.5),
                 "page_minus_bare_p95_ms": _percentile(diff_ms, 0.95),
                 "page_ms": [round(v, 3) for v in page_ms], "bare_ms": [round(v, 3) for v in bare_ms],
                 "fetch_ms": [round(v, 3) for v in fetch_ms]}
            out["reps"].append(r)
            log(f"T10 rep {rep + 1}/{reps}: {r['frames']} frames ({missed} missed): page p50 "
                f"{r['page_p50_ms']:.2f} p95 {r['page_p95_ms']:.2f} ms; bare EventSource p50 "
                f"{r['bare_p50_ms']:.2f} p95 {r['bare_p95_ms']:.2f} ms; bare fetch reader p50 "
                f"{r['fetch_p50_ms']:.2f} p95 {r['fetch_p95_ms']:.2f} ms; page-bare p50 "
                f"{r['page_minus_bare_p50_ms']:.2f} p95 {r['page_minus_bare_p95_ms']:.2f} ms")
        return out
    finally:
        browser.quit()
        procs.stop(browser.proc, grace=5)
        direct.close()


def t10_rows(results):
    """Table rows (id, label, per-repetition values)."""
    reps = (results.get("t10") or {}).get("reps", [])
    safe = lambda a, b: a / b if a is not None and b else None  # noqa: E731
    return [("T10", "page/bare EventSource p95", [safe(r["page_p95_ms"], r["bare_p95_ms"]) for r in reps]),
            ("T10", "page/bare EventSource p50", [safe(r["page_p50_ms"], r["bare_p50_ms"]) for r in reps])]


def t10_context(results):
    t10 = results.get("t10")
    if not t10 or not t10.get("reps"):
        return []
    reps = t10["reps"]
    pooled = lambda key, q: _percentile([v for r in reps for v in r[key]], q)  # noqa: E731
    return [f"T10 ms, all frames pooled ({sum(r['frames'] for r in reps)} frames, "
            f"{sum(r['missed'] for r in reps)} missed): page p50 {pooled('page_ms', 0.5):.2f} p95 "
            f"{pooled('page_ms', 0.95):.2f}; bare EventSource p50 {pooled('bare_ms', 0.5):.2f} p95 "
            f"{pooled('bare_ms', 0.95):.2f}; bare fetch reader p50 {pooled('fetch_ms', 0.5):.2f} p95 "
            f"{pooled('fetch_ms', 0.95):.2f}; Chromium {t10['chromium']}, clock within "
            f"{t10['clock_outside_ms']} ms"]


def chromium_installed():
    return os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)
