"""T12 (scale-out.md §2-3, performance.md): the store, PostgreSQL against SQLite, side by side.

A throwaway PostgreSQL cluster (Debian's `postgresql` package, the newest version under
/usr/lib/postgresql/*/bin) is started for the run: `initdb` and `postgres` run as the
`postgres` user (`runuser -u postgres --`; root may not run PostgreSQL) in a directory of the
bench's temp dir that user owns, listening on a unix socket in that directory only
(`-k <dir> -c listen_addresses=''`). Settings are PostgreSQL's defaults: fsync and
synchronous_commit on (SQLite's session writes are `synchronous = NORMAL`: in the WAL, not
fsynced per commit; `--t12-pg-setting synchronous_commit=off` is the closer match).

Two proxies run side by side from the same binary, local backend, built-in echo agent, static
key auth as bench.py's "on" proxy: "sqlite" (the default store) and "postgres"
(`persistence.backend: "postgres"`, `postgres_url` naming the socket directory, percent-encoded
as the host). Both get the same rows seeded straight into their database while stopped (ended
sessions with one tag each, `team=t0..t19`), then per repetition, interleaved on both:

  1. `/search` p50: requests alternate between the two proxies, the same query on both;
     page-cache misses (every query differs from the last 32: `limit=100&offset=o` with o
     walking the rows, and `tag.team=tK&limit=20&offset=o`), reported apart, and a hit (the
     same `limit=100` page again and again, no session write in between);
  2. `POST /start` p50: serial starts (`wait=true`), each deleted before the next, alternating
     the proxy that goes first;
  3. the proxy path: wrk on `GET /<id>/status` of one session on each proxy, A B B A with
     half the duration each (A alternating per repetition), throughput ratio PG/SQLite;
  4. that the proxy path does not touch the database: PostgreSQL's
     `pg_stat_database.xact_commit + xact_rollback` for the proxy's database, read before and
     after those four runs (each reading after a settle of `--t12-settle` seconds, because a
     backend that flushed its statistics less than 1 s before may hold them up to 10 s),
     reported per 1,000 requests proxied by the PG proxy; and, exact, the statements the
     server logged for that database during the runs (`log_statement = all` switched on with
     ALTER SYSTEM and a reload just for them) and through the settle after them. Background
     work (status refresh, purger, expired-login clean-up) in the window is included, not
     subtracted; so is autovacuum, whose runs on the proxy's tables in the window are counted
     from the log (`log_autovacuum_min_duration = 0`), since they commit transactions too.

After the repetitions, an untimed census (statement log on) counts the statements one
start+delete and one /search miss send to PostgreSQL.

Stdlib only. `bench/run.sh --only t12` (bench.py passes itself in as `bench`).
"""

import glob
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import time
import uuid

DB_NAME = "agentapi_t12"
SOCKET_PORT = 5432
TEAMS = 20


# --------------------------------------------------------------------------------------------
# The throwaway cluster
# --------------------------------------------------------------------------------------------

def pg_bin_dir():
    """The newest installed PostgreSQL's bin directory, or None."""
    found = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        try:
            version = int(os.path.basename(os.path.dirname(d)))
        except ValueError:
            continue
        if os.path.exists(os.path.join(d, "initdb")):
            found.append((version, d))
    return max(found)[1] if found else None


def postgres_installed():
    return pg_bin_dir() is not None and shutil.which("runuser") is not None


def _as_postgres(argv):
    return (["runuser", "-u", "postgres", "--"] + argv) if os.geteuid() == 0 else argv


class PgCluster:
    """A cluster in <tmp>/pg (owned by postgres), unix socket only; stopped by stop() and,
    failing that, by the bench's Procs cleanup (SIGINT = fast shutdown, then SIGKILL of the
    group) or a watchdog if the bench process dies without either."""

    def __init__(self, procs, tmp, log, settings=()):
        self.bin = pg_bin_dir()
        if not self.bin:
            raise RuntimeError("T12 needs PostgreSQL (apt-get install postgresql)")
        self.version = os.path.basename(os.path.dirname(self.bin))
        self.procs, self.log = procs, log
        self.dir = os.path.join(tmp, "pg")
        os.makedirs(self.dir)
        self.data = os.path.join(self.dir, "data")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        r = subprocess.run(_as_postgres([os.path.join(self.bin, "initdb"), "-D", self.data,
                                         "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                                         "--locale=C.UTF-8", "--no-sync"]),
                           capture_output=True, text=True, cwd=self.dir, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {r.stderr[-500:]}")
        argv = [os.path.join(self.bin, "postgres"), "-D", self.data, "-k", self.dir,
                "-p", str(SOCKET_PORT), "-c", "listen_addresses=",
                "-c", "log_line_prefix=%m [%p] db=%d ", "-c", "log_autovacuum_min_duration=0"]
        for s in settings:
            argv += ["-c", s]
        self.log_path = os.path.join(self.dir, "postgres.log")
        logf = open(self.log_path, "wb")
        self.proc = procs.spawn("postgres", _as_postgres(argv), term_signal=signal.SIGINT,
                                grace=20, stdout=logf, stderr=subprocess.STDOUT, cwd=self.dir)
        logf.close()
        self._watchdog()
        end = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}: "
                                   + self._log_tail())
            r = subprocess.run(_as_postgres([os.path.join(self.bin, "pg_isready"), "-q",
                                             "-h", self.dir, "-p", str(SOCKET_PORT)]),
                               cwd=self.dir, capture_output=True)
            if r.returncode == 0:
                break
            if time.monotonic() > end:
                raise RuntimeError("postgres did not accept connections within 30 s: "
                                   + self._log_tail())
            time.sleep(0.05)
        self.psql(f"CREATE DATABASE {DB_NAME}")
        self.settings = dict(line.split("|", 1) for line in self.psql(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', "
            "'full_page_writes', 'shared_buffers', 'wal_sync_method', 'max_connections')"
        ).splitlines() if "|" in line)
        log(f"T12: PostgreSQL {self.version} on unix socket {self.dir} "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.settings.items())))

    def _log_tail(self):
        try:
            with open(os.path.join(self.dir, "postgres.log"), errors="replace") as f:
                return f.read()[-800:]
        except OSError:
            return "(no log)"

    def _watchdog(self):
        """SIGINT the postmaster if this bench process dies without stopping it."""
        script = ('while kill -0 "$0" 2>/dev/null; do sleep 1; done; '
                  '[ -f "$1/postmaster.pid" ] && kill -INT "$(head -n 1 "$1/postmaster.pid")"')
        subprocess.Popen(["sh", "-c", script, str(os.getpid()), self.data],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)

    def url(self, db=DB_NAME):
        """The URL the proxy takes: the socket directory percent-encoded as the host."""
        return f"postgres://postgres@{self.dir.replace('/', '%2F')}:{SOCKET_PORT}/{db}?sslmode=disable"

    def psql(self, sql, db="postgres", stdin=None):
        """Runs sql (a string or a list, one -c each) with psql as postgres (unaligned, tuples
        only); returns stdout."""
        commands = [sql] if isinstance(sql, str) else list(sql or [])
        r = subprocess.run(_as_postgres([os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t",
                                         "-v", "ON_ERROR_STOP=1", "-h", self.dir,
                                         "-p", str(SOCKET_PORT), "-U", "postgres", "-d", db]
                                        + [a for c in commands for a in ("-c", c)]),
                           input=stdin, capture_output=True, text=True, cwd=self.dir, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"psql failed ({str(sql)[:80]!r}): {r.stderr[-500:]}")
        return r.stdout

    def xacts(self, db=DB_NAME):
        """Committed + rolled-back transactions of db so far (read from the `postgres`
        database, so this reading's own transaction is not counted in db)."""
        out = self.psql("SELECT pg_stat_force_next_flush(); SELECT pg_stat_clear_snapshot(); "
                        "SELECT xact_commit, xact_rollback FROM pg_stat_database "
                        f"WHERE datname = '{db}'")
        line = [x for x in out.splitlines() if "|" in x][-1]
        commit, rollback = (int(x) for x in line.split("|"))
        return commit + rollback, commit, rollback

    def log_statements(self, on):
        """Turns `log_statement = all` on or off for every session (ALTER SYSTEM and a reload;
        a backend applies it before its next command)."""
        self.psql(["ALTER SYSTEM SET log_statement = 'all'" if on else "ALTER SYSTEM RESET log_statement",
                   "SELECT pg_reload_conf()"])
        if on:
            time.sleep(0.5)

    def log_offset(self):
        return os.path.getsize(self.log_path)

    def statements_since(self, offset, db=DB_NAME):
        """Statements the server logged for db since offset (with log_statement on); and the
        first few of them."""
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        mark = f" db={db} "
        lines = [ln for ln in text.splitlines()
                 if mark in ln and ("LOG:  statement:" in ln or "LOG:  execute " in ln)]
        return len(lines), [ln.split("LOG:  ", 1)[1][:120] for ln in lines[:5]]

    def autovacuum_since(self, offset, db=DB_NAME):
        """Autovacuum and autoanalyze runs on db's tables since offset (logged with
        log_autovacuum_min_duration = 0): their transactions count in xact_commit too."""
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        return sum(1 for ln in text.splitlines()
                   if f'automatic vacuum of table "{db}.' in ln or f'automatic analyze of table "{db}.' in ln)

    def statement_kinds(self, offset, db=DB_NAME):
        """{statement text (prepared statement names dropped, cut at 60): count} since offset,
        and how many `execute` lines named a statement used only that once in the span (a
        statement prepared for one use: a Parse round trip each time)."""
        import re
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        kinds, uses = {}, {}
        for ln in text.splitlines():
            if f" db={db} " not in ln:
                continue
            m = re.search(r"LOG:  (?:statement: |execute (\S+): )(.*)", ln)
            if not m:
                continue
            if m.group(1):
                uses[m.group(1)] = uses.get(m.group(1), 0) + 1
            key = " ".join(m.group(2).split())[:60]
            kinds[key] = kinds.get(key, 0) + 1
        return kinds, sum(1 for n in uses.values() if n == 1)

    def stop(self):
        """Fast shutdown (SIGINT to the postmaster), wait, forget the process group."""
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                pid = int(f.readline())
            os.kill(pid, signal.SIGINT)
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.log("T12: postgres did not stop within 20 s; SIGKILL")
        self.procs.stop(self.proc, signal.SIGKILL, 1)


# --------------------------------------------------------------------------------------------
# Seeding: the same rows into both stores (the proxies stopped)
# --------------------------------------------------------------------------------------------

COLUMNS = ("id", "user_id", "status", "port", "backend_ref", "tags", "env_names", "started_at",
           "ended_at", "exit_code", "exit_reason", "agent_status", "initial_message", "restarts")


def make_rows(n):
    now = int(time.time() * 1000)
    rows, tags = [], []
    for i in range(n):
        started = now - (n - i) * 1000  # one per second, the newest a second ago
        sid = str(uuid.uuid4())
        team = f"t{i % TEAMS}"
        rows.append((sid, "bench", "exited", None, None, json.dumps({"team": team}), "[]",
                     started, started + 500, 0, "agent_exited", "stable", None, 0))
        tags.append((sid, "team", team))
    return rows, tags


def seed_sqlite(db_path, rows, tags):
    con = sqlite3.connect(db_path, timeout=10)
    try:
        with con:
            con.executemany(f"INSERT INTO sessions ({', '.join(COLUMNS)}) VALUES "
                            f"({','.join('?' * len(COLUMNS))})", rows)
            con.executemany("INSERT INTO session_tags (session_id, key, value) VALUES (?,?,?)", tags)
    finally:
        con.close()


def _copy_text(value):
    if value is None:
        return r"\N"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def seed_postgres(pg, rows, tags):
    lines = [f"COPY sessions ({', '.join(COLUMNS)}) FROM STDIN;"]
    lines += ["\t".join(_copy_text(v) for v in r) for r in rows]
    lines += ["\\.", "COPY session_tags (session_id, key, value) FROM STDIN;"]
    lines += ["\t".join(_copy_text(v) for v in t) for t in tags]
    lines += ["\\.", "ANALYZE sessions; ANALYZE session_tags;"]
    pg.psql(None, db=DB_NAME, stdin="\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------
# The measures
# --------------------------------------------------------------------------------------------

class KeepAlive:
    """One keep-alive connection to a proxy, timing GETs (ms). Opened per repetition with an
    untimed first request (the proxy closes connections left idle through wrk and the
    settles); a connection the server closed anyway is reopened and the request retried, and
    only the retry is timed."""

    def __init__(self, px, bench):
        import http.client
        self.px, self.bench = px, bench
        self.conn = http.client.HTTPConnection("127.0.0.1", px.port, timeout=30)
        self.get("/health")

    def get(self, path):
        import http.client
        for attempt in (0, 1):
            t0 = time.perf_counter()
            try:
                self.conn.request("GET", path, headers={self.bench.KEY_HEADER: self.bench.API_KEY})
                r = self.conn.getresponse()
                body = r.read()
                break
            except (http.client.RemoteDisconnected, ConnectionError) as e:
                self.conn.close()
                if attempt:
                    raise RuntimeError(f"proxy-{self.px.name}: GET {path}: {e!r}") from e
        ms = (time.perf_counter() - t0) * 1000
        if r.status != 200:
            raise RuntimeError(f"proxy-{self.px.name}: GET {path} -> {r.status} {body[:200]!r}")
        return ms, body

    def close(self):
        self.conn.close()


def miss_query(kind, k, rows):
    """The k-th page-cache-missing query of a kind; consecutive ones never repeat within
    hundreds of steps (the cache keeps at most 32 pages)."""
    if kind == "offset":
        span = max(1, rows - 100)
        return f"/search?limit=100&offset={(k * 7) % span}"
    per_team = max(1, rows // TEAMS)
    span = max(1, per_team - 20 + 1)
    return f"/search?tag.team=t{k % TEAMS}&limit=20&offset={(k // TEAMS) % span}"


def measure_search(pxs, conns, n, rows, counter):
    """n requests per kind per proxy, alternating proxies request by request; per proxy and
    kind the list of ms."""
    out = {name: {"offset": [], "tag": [], "hit": []} for name in pxs}
    names = list(pxs)
    for kind in ("offset", "tag"):
        for j in range(n):
            q = miss_query(kind, counter[kind], rows)
            counter[kind] += 1
            order = names if j % 2 == 0 else names[::-1]
            for name in order:
                ms, _ = conns[name].get(q)
                out[name][kind].append(ms)
    # Hits: the same page (filled by the first request, not timed); nothing writes meanwhile.
    for name in names:
        conns[name].get("/search?limit=100")
    for j in range(n):
        order = names if j % 2 == 0 else names[::-1]
        for name in order:
            ms, _ = conns[name].get("/search?limit=100")
            out[name]["hit"].append(ms)
    return out


def measure_starts(pxs, n, bench):
    out = {name: [] for name in pxs}
    names = list(pxs)
    for j in range(n):
        order = names if j % 2 == 0 else names[::-1]
        for name in order:
            ms, sid = bench.proxy_start(pxs[name])
            out[name].append(ms)
            bench.proxy_delete(pxs[name], sid)
    return out


def census(pg, px, bench, rows, starts=5, searches=10):
    pg.log_statements(True)
    try:
        off = pg.log_offset()
        for _ in range(starts):
            _, sid = bench.proxy_start(px)
            bench.proxy_delete(px, sid)
        time.sleep(1.0)  # writes that follow a DELETE's answer
        start_kinds, start_fresh = pg.statement_kinds(off)
        off = pg.log_offset()
        c = KeepAlive(px, bench)
        for k in range(searches):
            c.get(miss_query("offset" if k % 2 else "tag", 5000 + k, rows))
        c.close()
        search_kinds, search_fresh = pg.statement_kinds(off)
    finally:
        pg.log_statements(False)
    return {"starts": starts, "per_start_delete": round(sum(start_kinds.values()) / starts, 2),
            "per_start_delete_fresh_prepares": round(start_fresh / starts, 2),
            "start_delete_kinds": start_kinds,
            "searches": searches, "per_search_miss": round(sum(search_kinds.values()) / searches, 2),
            "per_search_fresh_prepares": round(search_fresh / searches, 2),
            "search_kinds": search_kinds}


def p50(values):
    return statistics.median(values) if values else None


def measure_t12(args, procs, tmp, log, bench):
    """The whole of T12; returns the results dict (stops everything it started)."""
    reps, rows_n = args.reps, args.t12_rows
    settings = list(args.t12_pg_setting or [])
    pg = PgCluster(procs, tmp, log, settings)
    pxs = {}
    try:
        session_cfg = {"retain_finished_seconds": 30 * 86400}
        pxs["sqlite"] = bench.Proxy(procs, args.bin, tmp, "t12-sqlite", auth=True, ports=16,
                                    session_cfg=session_cfg)
        pxs["postgres"] = bench.Proxy(procs, args.bin, tmp, "t12-postgres", auth=True, ports=16,
                                      session_cfg=session_cfg,
                                      persistence={"backend": "postgres",
                                                   "postgres_url": pg.url()})
        # Seed the same rows into both while the proxies are stopped.
        rows, tags = make_rows(rows_n)
        for px in pxs.values():
            px.stop()
        seed_sqlite(pxs["sqlite"].db_path, rows, tags)
        seed_postgres(pg, rows, tags)
        for px in pxs.values():
            px.spawn()
        for name, px in pxs.items():
            total = bench.search_total(px, "limit=1")
            tagged = bench.search_total(px, "tag.team=t3&limit=1")
            if total != rows_n or tagged != len([t for t in tags if t[2] == "t3"]):
                raise RuntimeError(f"T12: proxy-{name} /search total {total} (team t3: {tagged}) "
                                   f"after seeding {rows_n} rows")
        # One live session on each for the proxy path.
        sessions = {name: px.start_session() for name, px in pxs.items()}
        for name, (sid, aport) in sessions.items():
            log(f"T12: proxy-{name} :{pxs[name].port} session {sid} agent :{aport}")
        counter = {"offset": random.randrange(1000), "tag": random.randrange(1000)}
        out = {"rows": rows_n, "pg_version": pg.version, "pg_settings": pg.settings,
               "pg_extra_settings": settings, "settle_s": args.t12_settle, "reps": [],
               "request_errors": []}
        for rep in range(reps):
            r = {"rep": rep}
            conns = {name: KeepAlive(px, bench) for name, px in pxs.items()}
            s = measure_search(pxs, conns, args.t12_searches, rows_n, counter)
            for c in conns.values():
                c.close()
            r["search_ms"] = {n: {k: [round(x, 3) for x in v] for k, v in kinds.items()}
                              for n, kinds in s.items()}
            r["search_p50_ms"] = {n: {k: p50(v) for k, v in kinds.items()} for n, kinds in s.items()}
            st = measure_starts(pxs, args.t12_starts, bench)
            r["start_ms"] = {n: [round(x, 3) for x in v] for n, v in st.items()}
            r["start_p50_ms"] = {n: p50(v) for n, v in st.items()}
            # The proxy path: A B B A (A alternating per repetition), each run half the
            # duration, so a drift in the machine's load hits both alike; all four between two
            # readings of PostgreSQL's counters, with its statement log on.
            first, second = ("sqlite", "postgres") if rep % 2 == 0 else ("postgres", "sqlite")
            half = max(1, args.t12_duration // 2)
            time.sleep(args.t12_settle)
            x0, _, _ = pg.xacts()
            pg.log_statements(True)
            off0 = pg.log_offset()
            t0 = time.monotonic()
            runs = {"sqlite": [], "postgres": []}
            for name in (first, second, second, first):
                px = pxs[name]
                w = bench.run_wrk(f"{px.base}/{sessions[name][0]}/status", half, args.conns,
                                  {"proxy": [px.proc.pid]})
                if w["non2xx"] or w["socket_errors"] or not w["requests"]:
                    out["request_errors"].append(f"rep {rep + 1} {name}: {w['requests']} requests, "
                                                 f"{w['non2xx']} non-2xx, {w['socket_errors']} socket errors")
                runs[name].append(w)
            statements, statements_first = pg.statements_since(off0)
            statements_s = time.monotonic() - t0
            off1 = pg.log_offset()
            time.sleep(args.t12_settle)
            x1, _, _ = pg.xacts()
            t1 = time.monotonic()
            autovacuum = pg.autovacuum_since(off0)
            # Statements logged from the end of the runs through the settle (background work:
            # status refresh, purger, expired-login clean-up, leases).
            after, after_first = pg.statements_since(off1)
            pg.log_statements(False)
            r["wrk"] = {}
            for name, ws in runs.items():
                n = sum(w["requests"] for w in ws)
                cpu = sum(w["cpu_s"]["proxy"] for w in ws)
                r["wrk"][name] = {"runs": ws, "requests": n,
                                  "rps": statistics.mean(w["rps"] for w in ws),
                                  "non2xx": sum(w["non2xx"] for w in ws),
                                  "cpu_us_per_req": {"proxy": round(cpu * 1e6 / n, 1) if n else None}}
            w = r["wrk"]["postgres"]
            w["xacts"] = x1 - x0
            w["autovacuum_runs"] = autovacuum
            w["xact_window_s"] = round(t1 - t0, 2)
            w["xacts_per_1000_req"] = round((x1 - x0) * 1000 / w["requests"], 4) if w["requests"] else None
            w["statements"], w["statements_first"] = statements, statements_first
            w["statements_window_s"] = round(statements_s, 2)
            w["statements_after"], w["statements_after_first"] = after, after_first
            w["statements_after_window_s"] = round(time.monotonic() - t0 - statements_s, 2)
            out["reps"].append(r)
            sp, ss = r["search_p50_ms"], r["start_p50_ms"]
            log(f"T12 rep {rep + 1}/{reps}: /search p50 ms offset sqlite={sp['sqlite']['offset']:.2f} "
                f"pg={sp['postgres']['offset']:.2f}, tag sqlite={sp['sqlite']['tag']:.2f} "
                f"pg={sp['postgres']['tag']:.2f}, hit sqlite={sp['sqlite']['hit']:.2f} "
                f"pg={sp['postgres']['hit']:.2f}; /start p50 ms sqlite={ss['sqlite']:.2f} "
                f"pg={ss['postgres']:.2f}; wrk req/s sqlite={r['wrk']['sqlite']['rps']:.0f} "
                f"{[round(w['rps']) for w in r['wrk']['sqlite']['runs']]} "
                f"pg={r['wrk']['postgres']['rps']:.0f} {[round(w['rps']) for w in r['wrk']['postgres']['runs']]} "
                f"({first} first; non2xx {r['wrk']['sqlite']['non2xx']}/"
                f"{r['wrk']['postgres']['non2xx']}); PG xacts during the wrk runs "
                f"{r['wrk']['postgres']['xacts']} in {r['wrk']['postgres']['xact_window_s']} s "
                f"for {r['wrk']['postgres']['requests']} requests, statements logged "
                f"{r['wrk']['postgres']['statements']}")
        # A census, untimed: the statements one start+delete and one /search miss send to
        # PostgreSQL (log_statement on just for it).
        out["census"] = census(pg, pxs["postgres"], bench, rows_n)
        log(f"T12 census: {out['census']}")
        # Transactions a whole run cost the proxy's database (context).
        out["xacts_total"] = pg.xacts()[0]
        return out
    finally:
        for px in pxs.values():
            if px.proc.poll() is None:
                px.stop()
        pg.stop()


# --------------------------------------------------------------------------------------------
# Table rows and context lines (bench.py's extra_rows / extra_context)
# --------------------------------------------------------------------------------------------

def _safe(a, b):
    return a / b if a is not None and b else None


def t12_rows(results):
    reps = (results.get("t12") or {}).get("reps", [])
    sp = lambda r, n, k: r["search_p50_ms"][n][k]  # noqa: E731
    return [
        ("T12", "start p50 PG/SQLite",
         [_safe(r["start_p50_ms"]["postgres"], r["start_p50_ms"]["sqlite"]) for r in reps]),
        ("T12", "search miss offset PG/SQLite",
         [_safe(sp(r, "postgres", "offset"), sp(r, "sqlite", "offset")) for r in reps]),
        ("T12", "search miss tag PG/SQLite",
         [_safe(sp(r, "postgres", "tag"), sp(r, "sqlite", "tag")) for r in reps]),
        ("T12", "search hit PG/SQLite",
         [_safe(sp(r, "postgres", "hit"), sp(r, "sqlite", "hit")) for r in reps]),
        ("T12", "proxy req/s PG/SQLite",
         [_safe(r["wrk"]["postgres"]["rps"], r["wrk"]["sqlite"]["rps"]) for r in reps]),
        ("T12", "proxy CPU/req PG/SQLite",
         [_safe(r["wrk"]["postgres"]["cpu_us_per_req"]["proxy"], r["wrk"]["sqlite"]["cpu_us_per_req"]["proxy"])
          for r in reps]),
        ("T12", "PG xacts/1000 proxied req",
         [r["wrk"]["postgres"].get("xacts_per_1000_req") for r in reps]),
        ("T12", "PG stmts/1000 proxied req",
         [_safe(r["wrk"]["postgres"].get("statements"), r["wrk"]["postgres"]["requests"] / 1000)
          for r in reps]),
    ]


def t12_context(results):
    t12 = results.get("t12")
    if not t12 or not t12.get("reps"):
        return []
    reps = t12["reps"]
    med = lambda f: round(statistics.median(f(r) for r in reps), 3)  # noqa: E731
    out = []
    for name in ("sqlite", "postgres"):
        out.append(
            f"T12 {name:8s} (ms, median of per-rep p50s): /start {med(lambda r: r['start_p50_ms'][name])}; "
            f"/search miss offset {med(lambda r: r['search_p50_ms'][name]['offset'])}, "
            f"miss tag {med(lambda r: r['search_p50_ms'][name]['tag'])}, "
            f"hit {med(lambda r: r['search_p50_ms'][name]['hit'])}; "
            f"wrk {med(lambda r: r['wrk'][name]['rps']):.0f} req/s, "
            f"proxy CPU {med(lambda r: r['wrk'][name].get('cpu_us_per_req', {}).get('proxy', 0))} us/req")
    x = [r["wrk"]["postgres"]["xacts"] for r in reps]
    req = [r["wrk"]["postgres"]["requests"] for r in reps]
    win = [r["wrk"]["postgres"]["xact_window_s"] for r in reps]
    s = t12["pg_settings"]
    av = [r["wrk"]["postgres"].get("autovacuum_runs") for r in reps]
    out.append(f"T12 PG xacts in the proxy's database across each repetition's wrk runs (settle "
               f"{t12['settle_s']} s before and after; autovacuum's count too, see the statements): "
               f"{x} for {req} PG requests, windows {win} s, autovacuum/autoanalyze runs on its "
               f"tables in them {av}; whole run {t12.get('xacts_total')} xacts")
    st = [r["wrk"]["postgres"].get("statements") for r in reps]
    st_after = [r["wrk"]["postgres"].get("statements_after") for r in reps]
    first = [f for r in reps for f in (r["wrk"]["postgres"].get("statements_first") or [])][:3]
    first_after = [f for r in reps for f in (r["wrk"]["postgres"].get("statements_after_first") or [])][:3]
    out.append(f"T12 PG statements logged for the proxy's database (log_statement=all, no lag) during "
               f"each repetition's wrk runs: {st}" + (f" e.g. {first}" if first else "")
               + f"; from its end through the settle after it: {st_after}"
               + (f" e.g. {first_after}" if first_after else ""))
    c = t12.get("census")
    if c:
        out.append(f"T12 PG census (log_statement=all, untimed): {c['per_start_delete']} statements per "
                   f"start+delete ({c['per_start_delete_fresh_prepares']} of them on a statement "
                   f"prepared for that one use), {c['per_search_miss']} per /search miss ({c['per_search_fresh_prepares']} "
                   f"prepared anew); start+delete: "
                   + "; ".join(f"{v // c['starts'] if v % c['starts'] == 0 else round(v / c['starts'], 1)}x "
                               f"{k}" for k, v in sorted(c["start_delete_kinds"].items(), key=lambda kv: -kv[1])))
    out.append(f"T12 PostgreSQL {t12['pg_version']}, {t12['rows']} seeded rows, fsync={s.get('fsync')} "
               f"synchronous_commit={s.get('synchronous_commit')} wal_sync_method="
               f"{s.get('wal_sync_method')} shared_buffers={s.get('shared_buffers')}"
               + (f", extra {t12['pg_extra_settings']}" if t12.get("pg_extra_settings") else ""))
    return out
