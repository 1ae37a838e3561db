"""The chart's floors: what any design pays for the render itself.

    render_floors.py CASES_DIR

- in process ("floor"): the chart rendered again and again in one warm interpreter (median of 40, after a first);
- without reuse ("fork-floor"): the same warm interpreter, its objects frozen as the zygote's warmup leaves them,
  forks one child per run and the child renders the chart once, as a stateless execution's child does. The first
  touch of each page the render writes copies it from the parent (copy on write): each row carries the median
  page faults of the measured render. The `chart-primed` row primes each child with a throwaway render first (what
  a warm child could do while it waits) and carries the private memory that cost, the price of that floor.
Prints JSON lines.
"""
import gc
import json
import os
import resource
import runpy
import statistics
import sys
import time

from memory_bench import private_kb

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402,F401
import numpy  # noqa: E402,F401
import pandas  # noqa: E402,F401

chart = f"{sys.argv[1]}/chart.py"


def render_ms():
    t = time.perf_counter()
    runpy.run_path(chart)
    return (time.perf_counter() - t) * 1000


def child(prime, out):
    before = private_kb("self")
    if prime:
        runpy.run_path(chart)
    primed = private_kb("self") - before
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    ms = render_ms()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    os.write(out, json.dumps([ms, faults, primed]).encode())


def forked_runs(prime, n=21):
    rows = []
    for _ in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                child(prime, w)
            finally:
                os._exit(0)
        os.close(w)
        data = b""
        while chunk := os.read(r, 4096):
            data += chunk
        os.close(r)
        os.waitpid(pid, 0)
        rows.append(json.loads(data))
        time.sleep(0.05)  # the last child's exit is not measured in the next one
    return rows


in_process = [render_ms() for _ in range(41)]
print(json.dumps({"server": "floor", "case": "chart", "concurrency": 1, "errors": 0,
                  "p50_ms": round(statistics.median(in_process[1:]), 1)}), flush=True)
gc.collect()
gc.freeze()
for prime, case in ((False, "chart"), (True, "chart-primed")):
    rows = forked_runs(prime)
    print(json.dumps({"server": "fork-floor", "case": case, "concurrency": 1, "errors": 0,
                      "p50_ms": round(statistics.median(r[0] for r in rows), 1),
                      "page_faults_median": statistics.median(r[1] for r in rows),
                      "priming_private_kb_median": statistics.median(r[2] for r in rows)}), flush=True)
