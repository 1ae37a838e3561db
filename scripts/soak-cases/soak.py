"""A soak of a running `codeinterp serve`: real-looking benign work (the scientific stack, stateless and in sessions,
with uploads and downloads) mixed with hostile snippets, at a given concurrency, through a client that honours
429 Retry-After as the official SDKs do. Then a look for what the run left behind.

    soak.py URL KEY --data-dir DIR --server-pid PID [--executions 10000] [--concurrency 50] [--seed 1]

Runs inside the server's pid namespace (scripts/soak does that): it reads /proc, cgroups and the data directory.
Prints one summary (a markdown table, also written to --summary FILE) and exits 1 when a benign execution did not
end `ok`, a hostile one was not contained, any response was a 5xx, or anything leaked.
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import sqlite3
import statistics
import sys
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scenarios import BENIGN, HOSTILE, SESSION_CELLS  # noqa: E402

SANDBOX_UIDS = range(2_000_000, 3_000_000)


class Client:
    """One keep-alive connection; retries 429 after Retry-After (as the openai SDK does), never anything else."""

    def __init__(self, url, key, stats):
        parsed = urllib.parse.urlparse(url)
        self.host, self.port, self.key, self.stats = parsed.hostname, parsed.port, key, stats
        self.conn = None
        self.executions = 0

    def request(self, method, path, body=None, headers=None, key=True, raw=False):
        hdrs = dict(headers or {})
        if key:
            hdrs["Authorization"] = f"Bearer {self.key}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        for attempt in range(60):
            started = time.perf_counter()
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
                self.conn.request(method, path, body, hdrs)
                response = self.conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as e:
                self.conn = None
                self.stats.add("transport_errors")
                self.stats.note(f"{method} {path}: {type(e).__name__}: {e}")
                time.sleep(0.2)
                continue
            elapsed = time.perf_counter() - started
            if response.status == 429:
                self.stats.add("retried_429")
                wait = float(response.getheader("Retry-After") or 1)
                time.sleep(min(wait, 20) * random.uniform(0.8, 1.2))
                continue
            if response.status >= 500:
                self.stats.add("http_5xx")
                self.stats.note(f"{method} {path}: {response.status} {payload[:300]!r}")
            if raw:
                return response.status, payload, response, elapsed
            try:
                data = json.loads(payload) if payload else None
            except ValueError:
                data = None
            return response.status, data, response, elapsed
        raise RuntimeError(f"{method} {path}: still refused after 60 attempts")

    def execute(self, code, **extra):
        status, data, _, elapsed = self.request("POST", "/v1/execute", {"code": code, **extra})
        self.executions += 1
        if status == 200:
            self.stats.add("executions")
        return status, data, elapsed


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.latencies = []
        self.notes = []

    def add(self, name, n=1):
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def get(self, name):
        with self.lock:
            return self.counts.get(name, 0)

    def note(self, text):
        with self.lock:
            if len(self.notes) < 40:
                self.notes.append(text)

    def latency(self, seconds):
        with self.lock:
            self.latencies.append(seconds)


def value(result):
    return ((result or {}).get("result") or {}).get("text/plain")


def benign(client, stats, case):
    status, result, elapsed = client.execute(case["code"])
    stats.add("benign")
    ok = status == 200 and result["status"] == "ok" and case["check"](result)
    if ok:
        stats.latency(elapsed)
        ok = download_all(client, stats, result["files"])
    if not ok:
        stats.add("benign_not_ok")
        stats.note(f"benign {case['name']}: HTTP {status} {describe(result)}")


def hostile(client, stats, case):
    status, result, _ = client.execute(case["code"], **case.get("extra", {}))
    stats.add("hostile")
    contained = status == 200 and case["contained"](result)
    if contained and case.get("then"):
        status, after, _ = client.execute(case["then"]["code"])
        contained = status == 200 and after["status"] == "ok" and value(after) == case["then"]["expect"]
        result = after
    if not contained:
        stats.add("hostile_not_contained")
        stats.note(f"hostile {case['name']}: HTTP {status} {describe(result)}")


def describe(result):
    if not isinstance(result, dict):
        return repr(result)[:300]
    if "error" in result and isinstance(result["error"], dict) and "status" not in result:
        return result["error"].get("message", "")[:300]
    err = result.get("error") or {}
    return f"status={result.get('status')} value={str(value(result))[:120]!r} error={err.get('name')}: {str(err.get('value'))[:200]} stderr={result.get('stderr', '')[-200:]!r}"


def download_all(client, stats, files):
    """Every produced file downloads through its signed URL (no key) with the sha256 the result gave."""
    for f in files:
        parsed = urllib.parse.urlparse(f["url"])
        status, body, _, _ = client.request("GET", parsed.path + "?" + parsed.query, key=False, raw=True)
        stats.add("downloads")
        if status != 200 or hashlib.sha256(body).hexdigest() != f["sha256"] or len(body) != f["size_bytes"]:
            stats.note(f"download {f['name']}: HTTP {status}, {len(body)} bytes, sha256 mismatch={hashlib.sha256(body).hexdigest() != f['sha256']}")
            return False
    return True


def multipart(name, content):
    boundary = "soak" + uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: text/csv\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def session(client, stats, rng, containers):
    """A conversation: a session (native or an OpenAI container), an upload, cells that build on each other,
    a stateless run given the upload, downloads, a crash that the next cell survives, then deletion."""
    base = "/v1/containers" if containers else "/v1/sessions"
    status, created, _, _ = client.request("POST", base, {"name": "soak"} if containers else {})
    if status not in (200, 201):
        stats.add("benign"); stats.add("benign_not_ok"); stats.note(f"create {base}: HTTP {status} {created}")
        return
    sid = created["id"]
    rows = [f"{r},{rng.randint(1, 100)},{rng.random():.4f}" for r in ("north", "south", "east", "west") for _ in range(25)]
    csv = ("region,units,price\n" + "\n".join(rows) + "\n").encode()
    total = sum(int(r.split(",")[1]) for r in rows)
    body, headers = multipart("sales.csv", csv)
    status, upload, _, _ = client.request("POST", f"{base}/{sid}/files", body, headers)
    ok = status in (200, 201)
    if not ok:
        stats.note(f"upload: HTTP {status} {upload}")
    for cell in SESSION_CELLS:
        if not ok:
            break
        status, result, elapsed = client.execute(cell["code"], session_id=sid)
        stats.add("benign")
        ok = status == 200 and result["status"] == "ok" and cell["check"](result, total) and download_all(client, stats, result["files"])
        if ok:
            stats.latency(elapsed)
        else:
            stats.add("benign_not_ok")
            stats.note(f"session cell {cell['name']}: HTTP {status} {describe(result)}")
    if ok and not containers:
        status, result, elapsed = client.execute("import pandas as pd\nint(pd.read_csv('sales.csv').units.sum())", files=[upload["id"]])
        stats.add("benign")
        if status == 200 and result["status"] == "ok" and value(result) == str(total):
            stats.latency(elapsed)
        else:
            stats.add("benign_not_ok")
            stats.note(f"stateless with an input file: HTTP {status} {describe(result)}")
    if ok and rng.random() < 0.3:
        # A cell that kills its interpreter; the session's files stay and the next cell runs in a fresh one.
        status, crashed, _ = client.execute("import os\nos._exit(3)", session_id=sid)
        stats.add("hostile")
        status2, after, _ = client.execute("import os\nsorted(f for f in os.listdir('.') if f.endswith('.csv'))", session_id=sid)
        if not (status == 200 and crashed["status"] == "killed" and status2 == 200 and after["status"] == "ok"
                and "sales.csv" in (value(after) or "")):
            stats.add("hostile_not_contained")
            stats.note(f"session crash: {describe(crashed)} / then {describe(after)}")
    listing_path = f"{base}/{sid}/files"
    status, listing, _, _ = client.request("GET", listing_path)
    if status != 200 or not any(f.get("path") == "/mnt/data/sales.csv" for f in listing.get("data", [])):
        stats.note(f"session files listing: HTTP {status}")
        stats.add("benign_not_ok")
    client.request("DELETE", f"{base}/{sid}")


# --- Leaks -------------------------------------------------------------------------------------------------

def read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None


def processes():
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        status = read(f"/proc/{pid}/status") or ""
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        cmd = (read(f"/proc/{pid}/cmdline", "rb") or b"").replace(b"\0", b" ").decode(errors="replace").strip()
        try:
            uid = int(fields.get("Uid", "0").split()[0])
            ppid = int(fields.get("PPid", "0"))
        except ValueError:
            continue
        out[int(pid)] = {"ppid": ppid, "uid": uid, "cmd": cmd, "rss_kb": int((fields.get("VmRSS") or "0 kB").split()[0])}
    return out


def descendants(procs, root):
    children = {}
    for pid, p in procs.items():
        children.setdefault(p["ppid"], []).append(pid)
    seen, stack = [], [root]
    while stack:
        for c in children.get(stack.pop(), []):
            seen.append(c)
            stack.append(c)
    return seen


def stale_cgroups():
    """codeinterp-* cgroups whose zygote group is empty: nobody owns them any more (live ones of other instances
    on this machine are not counted). The kernel's own counters, which read the same from every pid namespace."""
    stale = 0
    for top in ("/sys/fs/cgroup", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory"):
        for dirpath, dirnames, _ in os.walk(top):
            if dirpath[len(top):].count("/") > 4:
                dirnames[:] = []
                continue
            for d in [d for d in dirnames if d.startswith("codeinterp-")]:
                zygote = os.path.join(dirpath, d, "zygote")
                events, pids = read(zygote + "/cgroup.events"), read(zygote + "/pids.current")
                if (events is not None and "populated 0" in events) or (pids is not None and pids.strip() == "0"):
                    stale += 1
            dirnames[:] = [d for d in dirnames if not d.startswith("codeinterp-")]
    return stale


def snapshot(data_dir, server_pid):
    procs = processes()
    tree = descendants(procs, server_pid)
    workers = [p for p in tree if "codeinterp-worker" in procs[p]["cmd"]]
    others = [p for p in tree if p not in workers]
    mount_namespaces = {os.path.realpath(f"/proc/{p}/ns/mnt") for p in tree if os.path.exists(f"/proc/{p}/ns/mnt")}
    work = [n for n in os.listdir(os.path.join(data_dir, "work")) if not n.startswith(".upload-")]
    files_dir = os.path.join(data_dir, "files")
    names = os.listdir(files_dir)
    temps = [n for n in names if n.startswith(".tmp-")]
    blobs = {n for n in names if not n.startswith(".")}
    db = sqlite3.connect(f"file:{data_dir}/codeinterp.sqlite?mode=ro", uri=True)
    rows = dict(db.execute("SELECT id, sha256 FROM file").fetchall())
    session_rows = {r[0] for r in db.execute("SELECT id FROM session").fetchall()}
    db.close()
    mismatched = 0
    for fid, digest in rows.items():
        data = read(os.path.join(files_dir, fid), "rb")
        if data is not None and hashlib.sha256(data).hexdigest() != digest:
            mismatched += 1
    session_dirs = set(os.listdir(os.path.join(data_dir, "sessions")))
    server_mounts = sum(1 for line in (read(f"/proc/{server_pid}/mountinfo") or "").splitlines() if data_dir in line)
    return {
        "processes": len(tree), "worker_processes": len(workers), "other_processes": len(others),
        "other_commands": sorted({procs[p]["cmd"][:60] for p in others})[:10],
        "sandbox_uid_processes": sum(1 for p in tree if procs[p]["uid"] in SANDBOX_UIDS),
        "mount_namespaces": len(mount_namespaces), "server_mounts": server_mounts, "cgroups": stale_cgroups(),
        "work_dirs": len(work), "temp_files": len(temps),
        "rows_without_blobs": len(set(rows) - blobs), "blobs_without_rows": len(blobs - set(rows)),
        "sha256_mismatches": mismatched, "session_dirs_without_rows": len(session_dirs - session_rows),
        "server_rss_kb": procs.get(server_pid, {}).get("rss_kb", 0),
        # The zygote: the worker process with the most memory (the others are its waiter and its children).
        "worker_rss_kb": max((procs[p]["rss_kb"] for p in workers), default=0),
        "stored_files": len(rows),
    }


# Counted after the warm-up and again after the run, once the pool has refilled: any rise is a leak.
LEAK_KEYS = ["processes", "worker_processes", "other_processes", "sandbox_uid_processes", "mount_namespaces",
             "server_mounts", "cgroups", "work_dirs", "temp_files"]
INTEGRITY_KEYS = ["rows_without_blobs", "blobs_without_rows", "sha256_mismatches", "session_dirs_without_rows"]


def settle(url, key, data_dir, server_pid, baseline):
    """Waits (bounded) for the warm pool to refill and the last children to be reaped, then snapshots."""
    deadline = time.time() + 60
    while True:
        now = snapshot(data_dir, server_pid)
        if all(now[k] <= baseline[k] for k in LEAK_KEYS) or time.time() > deadline:
            return now
        time.sleep(0.5)


def steady(data_dir, server_pid):
    """The baseline: a snapshot once the worker tree has stopped changing (bounded). The pool forks the replacement
    of a child after that child's execution has been answered, so right after the warm-up it may still be one short."""
    deadline = time.time() + 60
    last = snapshot(data_dir, server_pid)
    while time.time() < deadline:
        time.sleep(2)
        now = snapshot(data_dir, server_pid)
        if all(now[k] == last[k] for k in LEAK_KEYS):
            return now
        last = now
    return last


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("key")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--executions", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--summary", help="also write the summary table here")
    args = ap.parse_args()
    stats = Stats()
    warm = Client(args.url, args.key, Stats())
    for _ in range(3):
        warm.execute("import numpy, pandas, matplotlib.pyplot\n1")
    start = steady(args.data_dir, args.server_pid)

    lock = threading.Lock()
    issued = [0]

    def worker(n):
        rng = random.Random(args.seed * 1000 + n)
        client = Client(args.url, args.key, stats)
        while True:
            with lock:
                if issued[0] >= args.executions:
                    return
                roll = rng.random()
                # Reserved up front (a session runs several executions), corrected once the scenario has run.
                cost = 5 if roll < 0.12 else 1
                issued[0] += cost
            before = client.executions
            try:
                if roll < 0.12:
                    session(client, stats, rng, containers=rng.random() < 0.4)
                elif roll < 0.27:
                    hostile(client, stats, rng.choice(HOSTILE))
                else:
                    benign(client, stats, rng.choice(BENIGN))
            except Exception as e:  # a client-side surprise is a failure of the run, not a crash of the soak
                stats.add("client_errors")
                stats.note(f"client error: {type(e).__name__}: {e}")
            with lock:
                issued[0] += client.executions - before - cost

    started = time.time()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    duration = time.time() - started
    end = settle(args.url, args.key, args.data_dir, args.server_pid, start)

    span = lambda k: f"{start[k]} → {end[k]}" if start[k] != end[k] else str(end[k])  # noqa: E731
    lat = sorted(stats.latencies)
    p = lambda q: lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))] * 1000 if lat else 0  # noqa: E731
    leaks = {k: end[k] - start[k] for k in LEAK_KEYS if end[k] > start[k]}
    integrity = {k: end[k] for k in INTEGRITY_KEYS if end[k]}
    failed = (stats.get("benign_not_ok") or stats.get("hostile_not_contained") or stats.get("http_5xx")
              or stats.get("client_errors") or stats.get("transport_errors") or leaks or integrity)
    rows = [
        ("executions (HTTP 200)", f"{stats.get('executions')} in {duration:.0f} s at concurrency {args.concurrency} ({stats.get('executions') / duration:.1f}/s)"),
        ("benign executions not `ok`", f"{stats.get('benign_not_ok')} of {stats.get('benign')}"),
        ("hostile executions not contained", f"{stats.get('hostile_not_contained')} of {stats.get('hostile')}"),
        ("HTTP 5xx", str(stats.get("http_5xx"))),
        ("429 answered and retried after Retry-After", str(stats.get("retried_429"))),
        ("transport or client errors", str(stats.get("transport_errors") + stats.get("client_errors"))),
        ("files downloaded and sha256-checked", str(stats.get("downloads"))),
        ("benign latency p50 / p99", f"{p(0.5):.0f} ms / {p(0.99):.0f} ms"),
        ("server RSS start → end", f"{start['server_rss_kb'] / 1024:.0f} MB → {end['server_rss_kb'] / 1024:.0f} MB"),
        ("zygote RSS start → end", f"{start['worker_rss_kb'] / 1024:.0f} MB → {end['worker_rss_kb'] / 1024:.0f} MB"),
        ("processes: user code left running / sandbox uids", f"{end['other_processes']} / {span('sandbox_uid_processes')}"),
        ("zygote + warm children", span("worker_processes")),
        ("mount namespaces / mounts of the data dir in the server's", f"{span('mount_namespaces')} / {span('server_mounts')}"),
        ("codeinterp cgroups left without their zygote", span("cgroups")),
        ("work directories / temp files", f"{span('work_dirs')} / {span('temp_files')}"),
        ("rows without blobs / blobs without rows", f"{end['rows_without_blobs']} / {end['blobs_without_rows']}"),
        ("stored files whose sha256 no longer matches", f"{end['sha256_mismatches']} of {end['stored_files']}"),
        ("session directories without a session", str(end["session_dirs_without_rows"])),
    ]
    table = "| soak | result |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    print(table)
    if stats.notes:
        print("\nfirst problems:\n  " + "\n  ".join(stats.notes), file=sys.stderr)
    if leaks or integrity:
        print(f"\nleaks: {leaks} integrity: {integrity} (start {start}, end {end})", file=sys.stderr)
    if args.summary:
        with open(args.summary, "w") as f:
            f.write(table + "\n")
    print(json.dumps({"soak": "FAILED" if failed else "passed", "executions": stats.get("executions"),
                      "benign_not_ok": stats.get("benign_not_ok"), "hostile_not_contained": stats.get("hostile_not_contained"),
                      "http_5xx": stats.get("http_5xx"), "leaks": leaks, "integrity": integrity}))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
