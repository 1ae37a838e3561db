"""The chart in a process forked from a warm interpreter: the floor for any design that never reuses a process.

The parent imports what the zygote preloads, renders the chart once and freezes its objects (as the zygote's
warmup does), then forks one child per run. Each child renders the chart once, as a stateless execution's
child does, and reports the time and its page faults: the first touch of each page the render writes copies it
from the parent (copy on write). A second row primes each child with a throwaway render first (what a warm child
could do while it waits) and reports the priming's cost in private memory, the price of that floor."""
import gc
import json
import os
import resource
import runpy
import statistics
import sys
import time

chart = f"{sys.argv[1]}/chart.py"
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402,F401
import numpy  # noqa: E402,F401
import pandas  # noqa: E402,F401

runpy.run_path(chart)
gc.collect()
gc.freeze()


def private_dirty_kb():
    with open("/proc/self/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Private_Dirty:"))


def child(prime, out):
    before = private_dirty_kb()
    if prime:
        runpy.run_path(chart)
    primed = private_dirty_kb() - before
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = time.perf_counter()
    runpy.run_path(chart)
    ms = (time.perf_counter() - t) * 1000
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    os.write(out, json.dumps([ms, faults, primed]).encode())


def runs(prime, n=21):
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


for prime, case in ((False, "chart"), (True, "chart-primed")):
    rows = runs(prime)
    print(json.dumps({"server": "fork-floor", "case": case, "concurrency": 1, "errors": 0,
                      "p50_ms": round(statistics.median(r[0] for r in rows), 1),
                      "page_faults_median": statistics.median(r[1] for r in rows),
                      "priming_private_kb_median": statistics.median(r[2] for r in rows)}))
