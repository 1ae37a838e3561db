"""A warm Jupyter kernel (ipykernel driven by jupyter_client), the same cases as http_bench.py, one client.

    jupyter_bench.py [--requests N]

No isolation at all: one long-lived interpreter, every cell in it. Prints JSON lines like http_bench.py.
"""
import json
import os
import statistics
import sys
import time

from jupyter_client.manager import start_new_kernel

CASES = os.path.dirname(os.path.abspath(__file__))
SPACING = 0.3


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run(client, code):
    msg_id = client.execute(code)
    status = "ok"
    while True:
        msg = client.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "error":
            status = "error"
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return status


def main():
    n = int(sys.argv[sys.argv.index("--requests") + 1]) if "--requests" in sys.argv else 40
    os.environ.update({"MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1"})  # the kernel inherits these
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        chart = open(os.path.join(CASES, "chart.py")).read()
        run(client, "x = 0")
        # "-spaced": one request every SPACING seconds, as a chat backend sends them (a model call in between).
        for name, code, gap in [("print1", "print(1)", 0), ("incr", "x += 1", 0), ("chart", chart, 0),
                                ("print1-spaced", "print(1)", SPACING)]:
            run(client, code)  # warm
            latencies = []
            started = time.perf_counter()
            for _ in range(n):
                t = time.perf_counter()
                if run(client, code) != "ok":
                    raise SystemExit(f"{name} failed in the kernel")
                latencies.append((time.perf_counter() - t) * 1000)
                time.sleep(gap)
            wall = time.perf_counter() - started
            print(json.dumps({"server": "jupyter", "case": name, "concurrency": 1, "requests": n, "errors": 0,
                              "p50_ms": round(statistics.median(latencies), 1),
                              "p95_ms": round(percentile(latencies, 95), 1),
                              "p99_ms": round(percentile(latencies, 99), 1),
                              "throughput_rps": round(n / wall, 1)}), flush=True)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


if __name__ == "__main__":
    main()
