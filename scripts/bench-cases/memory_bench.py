"""Private memory of codeinterp's idle children: the warm pool's, and idle sessions' interpreters.

    memory_bench.py URL KEY SERVER_PID [--sessions N]

Reads /proc/PID/smaps_rollup (Private_Clean + Private_Dirty) of every child of the zygote, the server's
grandchild. Prints JSON lines.
"""
import http.client
import json
import os
import statistics
import sys
import time
import urllib.parse


def children(pid):
    # Per thread: the server starts its worker from whichever thread runs the engine's start.
    kids = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return kids


def private_kb(pid):
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def descendants(pid):
    out = []
    for c in children(pid):
        out.append(c)
        out += descendants(c)
    return out


def zygote_children(server_pid):
    # server -> worker (waits in the host's pid namespace) -> zygote -> children: the zygote is the descendant
    # with the most children (the worker may not be the server's first child).
    best = (None, [])
    for pid in descendants(server_pid):
        kids = children(pid)
        if len(kids) > len(best[1]):
            best = (pid, kids)
    return best


def post(conn, key, path, body):
    conn.request("POST", path, json.dumps(body), {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if not 200 <= r.status < 300:
        raise RuntimeError(f"{path}: HTTP {r.status}: {data[:200]!r}")
    return json.loads(data)


def main():
    url, key, server = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sessions = int(sys.argv[sys.argv.index("--sessions") + 1]) if "--sessions" in sys.argv else 4
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)
    post(conn, key, "/v1/execute", {"code": "print(1)"})
    time.sleep(3)  # the pool refills in the background
    zygote, warm = zygote_children(server)
    if not warm:
        raise SystemExit("no warm children found under the server")
    warm_kb = [private_kb(p) for p in warm]
    # One child of each pool is primed (a throwaway chart rendered while it waits): the largest of them.
    print(json.dumps({"case": "idle-warm-child", "children": len(warm), "private_kb_median": statistics.median(warm_kb),
                      "private_kb_max": max(warm_kb), "private_kb_total": sum(warm_kb),
                      "zygote_private_kb": private_kb(zygote)}), flush=True)
    ids = []
    for _ in range(sessions):
        sid = post(conn, key, "/v1/sessions", {})["id"]
        post(conn, key, "/v1/execute", {"code": "import pandas as pd\nx = 1", "session_id": sid})
        ids.append(sid)
    time.sleep(3)
    _, now = zygote_children(server)
    session_pids = [p for p in now if p not in warm]
    if session_pids:
        kb = [private_kb(p) for p in session_pids]
        print(json.dumps({"case": "idle-session", "children": len(kb), "private_kb_median": statistics.median(kb)}), flush=True)
    for sid in ids:
        conn.request("DELETE", f"/v1/sessions/{sid}", headers={"Authorization": f"Bearer {key}"})
        conn.getresponse().read()


if __name__ == "__main__":
    main()
