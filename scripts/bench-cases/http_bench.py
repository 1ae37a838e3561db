"""HTTP round trips against a running server: latency percentiles and throughput at several concurrencies.

    http_bench.py URL KEY LABEL [--naive] [--levels 1,2,8,32] [--requests-per-level N]

Cases: print(1) and the chart (bench-cases/chart.py), stateless, and (codeinterp only) in a session: each
client thread has its own session and runs its requests in it, as a chat backend with one session per
conversation does. Prints one JSON line per (case, concurrency), with the medians of the stages each result's
`usage` reports (codeinterp only), how many executions found no warm child waiting and how many took the pool's
primed child (from /metrics).
"""
import http.client
import json
import os
import statistics
import sys
import threading
import time
import urllib.parse

CASES = os.path.dirname(os.path.abspath(__file__))


def connection(url):
    parsed = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=300)


def post(conn, key, path, body):
    conn.request("POST", path, json.dumps(body), {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    if not 200 <= response.status < 300:
        raise RuntimeError(f"{path}: HTTP {response.status}: {payload[:300]!r}")
    return json.loads(payload)


def primed_takes(url, key, naive):
    """codeinterp's count of stateless executions that took a primed child (None for the naive server)."""
    if naive:
        return None
    conn = connection(url)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {key}"})
        for line in conn.getresponse().read().decode().splitlines():
            if line.startswith("codeinterp_warm_pool_primed_takes_total "):
                return int(float(line.split()[1]))
    finally:
        conn.close()
    return None


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


SPACING = 0.3
STAGES = ("queue_ms", "start_ms", "run_ms", "collect_ms", "store_ms")


def run_level(url, key, code, concurrency, total, session, setup=None, gap=0):
    latencies, errors, stages, cold = [], [], {stage: [] for stage in STAGES}, []
    lock = threading.Lock()
    per_thread = max(1, total // concurrency)

    def client():
        conn = connection(url)
        try:
            body = {"code": code}
            if session:
                body["session_id"] = post(conn, key, "/v1/sessions", {})["id"]
            # Warm this connection (and the session's interpreter, with the state the case needs).
            post(conn, key, "/v1/execute", dict(body, code=setup) if setup else body)
            for _ in range(per_thread):
                started = time.perf_counter()
                result = post(conn, key, "/v1/execute", body)
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    if result.get("status") == "ok":
                        latencies.append(elapsed)
                        usage = result.get("usage") or {}
                        for stage in STAGES:
                            if stage in usage:
                                stages[stage].append(usage[stage])
                        cold.append(usage.get("warm_start") is False)
                    else:
                        errors.append(result.get("status"))
                time.sleep(gap)
            if session:
                conn.request("DELETE", f"/v1/sessions/{body['session_id']}", headers={"Authorization": f"Bearer {key}"})
                conn.getresponse().read()
        except Exception as error:  # counted, reported
            with lock:
                errors.append(str(error)[:200])
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return latencies, errors, wall, stages, cold


def main():
    url, key, label = sys.argv[1], sys.argv[2], sys.argv[3]
    naive = "--naive" in sys.argv
    levels = [1, 2, 8, 32]
    per_level = 40
    if "--levels" in sys.argv:
        levels = [int(x) for x in sys.argv[sys.argv.index("--levels") + 1].split(",")]
    if "--requests-per-level" in sys.argv:
        per_level = int(sys.argv[sys.argv.index("--requests-per-level") + 1])
    chart = open(os.path.join(CASES, "chart.py")).read()
    cases = [("print1", "print(1)", False, None), ("incr", "x = 0\nx += 1", False, None), ("chart", chart, False, None)]
    if not naive:
        cases += [("print1-session", "print(1)", True, None), ("incr-session", "x += 1", True, "x = 0"),
                  ("chart-session", chart, True, None)]
    # "-spaced": one client, one request every SPACING seconds, as a chat backend sends them (a model call between
    # two executions): what a user waits for when the pool is not being drained back to back.
    # The chart spaced too: between two charts the pool is quiet and primes a child (a throwaway render, see
    # WarmPool), which back-to-back traffic never lets it do.
    spaced = [("print1-spaced", "print(1)", False, None)]
    if not naive:
        spaced += [("print1-session-spaced", "print(1)", True, None), ("chart-spaced", chart, False, None)]
    for name, code, session, setup in cases + spaced:
        gap = SPACING if name.endswith("-spaced") else 0
        for concurrency in ([1] if gap else levels):
            total = max(per_level, 2 * concurrency)
            primed_before = primed_takes(url, key, naive)
            latencies, errors, wall, stages, cold = run_level(url, key, code, concurrency, total, session, setup, gap)
            primed_after = primed_takes(url, key, naive)
            row = {"server": label, "case": name, "concurrency": concurrency, "requests": len(latencies),
                   "errors": len(errors), "first_error": errors[0] if errors else None}
            if latencies:
                row.update({"p50_ms": round(statistics.median(latencies), 1),
                            "p95_ms": round(percentile(latencies, 95), 1),
                            "p99_ms": round(percentile(latencies, 99), 1),
                            "throughput_rps": round(len(latencies) / wall, 1)})
            # Where the time went inside the server (each result's usage), and how many found no warm child.
            row.update({stage.replace("_ms", "_p50_ms"): round(statistics.median(values), 1)
                        for stage, values in stages.items() if values})
            if cold:
                row["cold_starts"] = sum(cold)
            if primed_before is not None and primed_after is not None and not session:
                row["primed_takes"] = primed_after - primed_before  # the warm-up request's included
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
