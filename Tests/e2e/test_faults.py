"""Faults, end to end, each against a `codeinterp serve` of its own: kill -9 of the server during writes and a
restart (nothing lost, nothing half-kept), kill -9 of the worker under load (in-flight executions fail clearly,
the worker is replaced, /healthz says so meanwhile), and a full data directory (a small tmpfs mounted in this
test's own mount namespace: executions and uploads fail clearly, nothing half-written is served, and the service
recovers when space returns).

Runs inside scripts/test's pid + mount + network namespace. Needs the built binary: CODEINTERP_BIN (default
.build/debug/codeinterp).
"""
import hashlib
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CODEINTERP_BIN", os.path.join(ROOT, ".build/debug/codeinterp"))
KEY = "e2e-faults-key"
# Only keeps a deadlock from hanging the whole run; every wait below is for a signal, not for time.
DEADLOCK_GUARD = 600


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`codeinterp serve` on a data directory that outlives it (restart, kill -9)."""

    def __init__(self, data=None):
        self.data = data or tempfile.mkdtemp()
        self.process = None

    def start(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(self.data, "server.log"), "ab")
        self.process = subprocess.Popen([BIN, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir",
                                         self.data, "--api-key", KEY, "--rate-limit", "0"], stdout=self.log, stderr=self.log)
        self.wait_healthy()
        return self

    def wait_healthy(self):
        """Until /healthz says executions can run (the server listens once its worker has preloaded)."""
        deadline = time.time() + DEADLOCK_GUARD
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the server exited: " + self.log_tail())
            try:
                status, body = self.request("GET", "/healthz", key=False)
                if status == 200:
                    return body
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("no healthy /healthz: " + self.log_tail())

    def log_tail(self):
        with open(os.path.join(self.data, "server.log"), errors="replace") as f:
            return f.read()[-3000:]

    def kill9(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.log.close()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait()
        self.log.close()

    def request(self, method, path, body=None, headers=None, key=True, timeout=120):
        parsed = urllib.parse.urlparse(self.url)
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
        hdrs = dict(headers or {})
        if key:
            hdrs["Authorization"] = f"Bearer {KEY}"
        if isinstance(body, dict):
            body = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body, hdrs)
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(payload)
        except ValueError:
            return response.status, payload

    def upload(self, session, name, content):
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n").encode() \
            + content + f"\r\n--{boundary}--\r\n".encode()
        return self.request("POST", f"/v1/sessions/{session}/files", body,
                            {"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def download(self, file_object):
        parsed = urllib.parse.urlparse(file_object["url"])
        status, body = self.request("GET", parsed.path + "?" + parsed.query, key=False)
        return status, body if isinstance(body, bytes) else json.dumps(body).encode()

    def processes(self):
        """This server's descendants: pid -> command line."""
        children, commands = {}, {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/status") as f:
                    ppid = int(next(line for line in f if line.startswith("PPid:")).split()[1])
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    commands[int(pid)] = f.read().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, StopIteration, ValueError):
                continue
            children.setdefault(ppid, []).append(int(pid))
        found, stack = {}, [self.process.pid]
        while stack:
            for c in children.get(stack.pop(), []):
                found[c] = commands.get(c, "")
                stack.append(c)
        return found

    def worker_pid(self):
        """The worker the engine spawned (its direct child running codeinterp-worker)."""
        for pid, cmd in self.processes().items():
            with open(f"/proc/{pid}/status") as f:
                ppid = int(next(line for line in f if line.startswith("PPid:")).split()[1])
            if ppid == self.process.pid and "codeinterp-worker" in cmd:
                return pid
        return None


def integrity(data):
    """(rows without blobs, blobs without rows, rows whose blob's sha256 differs) of a data directory."""
    files = os.path.join(data, "files")
    blobs = {n for n in os.listdir(files) if not n.startswith(".")}
    db = sqlite3.connect(f"file:{data}/codeinterp.sqlite?mode=ro", uri=True)
    rows = dict(db.execute("SELECT id, sha256 FROM file").fetchall())
    db.close()
    changed = []
    for fid, digest in rows.items():
        if fid in blobs:
            with open(os.path.join(files, fid), "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() != digest:
                    changed.append(fid)
    return sorted(set(rows) - blobs), sorted(blobs - set(rows)), changed


class ServerKilledDuringWrites(unittest.TestCase):
    def test_kill_9_during_uploads_and_executions_then_restart(self):
        server = Server().start()
        sessions = [server.request("POST", "/v1/sessions", {})[1]["id"] for _ in range(3)]
        acknowledged = []  # (session or None, file object) that a 200/201 answered before the kill
        lock = threading.Lock()
        enough = threading.Event()
        stop = threading.Event()

        def writer(n):
            i = 0
            while not stop.is_set():
                i += 1
                session = sessions[(n + i) % len(sessions)]
                try:
                    if i % 2:
                        content = os.urandom(200_000 + 1000 * n)
                        status, f = server.upload(session, f"upload-{n}-{i}.bin", content)
                        files = [f] if status == 201 else []
                    else:
                        code = f"import os\nopen('out-{n}-{i}.bin', 'wb').write(os.urandom(300_000))\n'written'"
                        status, r = server.request("POST", "/v1/execute", {"code": code, **({"session_id": session} if n % 2 else {})})
                        files = r["files"] if status == 200 and r["status"] == "ok" else []
                        session = session if n % 2 else None
                except OSError:
                    return  # the server is gone
                with lock:
                    acknowledged.extend((session, f) for f in files)
                    if len(acknowledged) >= 24:
                        enough.set()

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        self.assertTrue(enough.wait(DEADLOCK_GUARD), "the writers never got going: " + server.log_tail())
        server.kill9()  # with writes in flight
        stop.set()
        for t in threads:
            t.join()

        server.start()  # same data directory: the store opens alone and sweeps what the kill left half-made
        try:
            missing, orphans, changed = integrity(server.data)
            self.assertEqual(missing, [], "rows whose blob is gone")
            self.assertEqual(orphans, [], "blobs without a row after the start-up sweep")
            self.assertEqual(changed, [], "blobs whose sha256 no longer matches their row")
            self.assertEqual([n for n in os.listdir(os.path.join(server.data, "files")) if n.startswith(".tmp-")], [])
            # Everything acknowledged before the kill is still there, byte for byte.
            for session, f in acknowledged:
                status, meta = server.request("GET", f"/v1/files/{f['id']}")
                self.assertEqual(status, 200, f"{f['name']} was acknowledged, then lost")
                status, body = server.download(meta)
                self.assertEqual((status, hashlib.sha256(body).hexdigest()), (200, f["sha256"]), f["name"])
            # And every session's files still download, and its next cell sees them.
            for session in sessions:
                status, listing = server.request("GET", f"/v1/sessions/{session}/files")
                self.assertEqual(status, 200)
                for f in listing["data"]:
                    status, body = server.download(f)
                    self.assertEqual((status, hashlib.sha256(body).hexdigest()), (200, f["sha256"]), f["name"])
                status, r = server.request("POST", "/v1/execute", {"code": "import os\nsorted(os.listdir('.'))", "session_id": session})
                self.assertEqual((status, r["status"]), (200, "ok"))
                listed = {f["path"].rsplit("/", 1)[1] for f in listing["data"]}
                self.assertTrue(listed <= set(eval(r["result"]["text/plain"])), f"{listed} not all in /mnt/data")
        finally:
            server.stop()


class WorkerKilledUnderLoad(unittest.TestCase):
    def test_in_flight_executions_fail_clearly_and_the_worker_is_replaced(self):
        server = Server().start()
        try:
            first = server.worker_pid()
            self.assertIsNotNone(first)
            started = threading.Semaphore(0)
            outcomes = []

            def streamed(n):
                parsed = urllib.parse.urlparse(server.url)
                conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=DEADLOCK_GUARD)
                code = "import time\nprint('started', flush=True)\ntime.sleep(60)"
                conn.request("POST", "/v1/execute?stream=true", json.dumps({"code": code}),
                             {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
                response = conn.getresponse()
                events, told = [], False
                for line in response:
                    line = line.decode().strip()
                    if line.startswith("event: "):
                        events.append(line[7:])
                    if line.startswith("data: ") and events and events[-1] == "stdout" and not told:
                        told = True
                        started.release()
                    if line.startswith("data: ") and events and events[-1] in ("error", "result"):
                        outcomes.append((events[-1], json.loads(line[6:])))
                        break
                conn.close()

            threads = [threading.Thread(target=streamed, args=(n,)) for n in range(3)]
            for t in threads:
                t.start()
            for _ in threads:
                self.assertTrue(started.acquire(timeout=DEADLOCK_GUARD), "an execution never started")
            os.kill(first, signal.SIGKILL)
            for t in threads:
                t.join()
            # Each in-flight execution ended with an error event that says what happened (not a hang, not a result).
            self.assertEqual(len(outcomes), 3, outcomes)
            for kind, body in outcomes:
                self.assertEqual(kind, "error", body)
                self.assertEqual(body["error"]["code"], "sandbox_unavailable", body)
                self.assertIn("worker", body["error"]["message"])
            # /healthz tells the truth until a worker runs again (its own check starts one), then is healthy.
            status, health = server.request("GET", "/healthz", key=False)
            self.assertEqual((status, health["status"]), (503, "unavailable"), health)
            self.assertIn("worker", health["reason"])
            server.wait_healthy()
            second = server.worker_pid()
            self.assertNotIn(second, (None, first))
            status, r = server.request("POST", "/v1/execute", {"code": "6 * 7"})
            self.assertEqual((status, r["status"], r["result"]["text/plain"]), (200, "ok", "42"))
        finally:
            server.stop()


@unittest.skipUnless(os.geteuid() == 0, "mounting a small tmpfs needs root (in the test's own mount namespace)")
class DataDirectoryFull(unittest.TestCase):
    def test_executions_and_uploads_fail_clearly_and_the_service_recovers(self):
        data = tempfile.mkdtemp()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", data]).returncode != 0:
            self.skipTest("cannot mount a tmpfs here")
        server = Server(data).start()
        filler = os.path.join(data, "filler")
        try:
            session = server.request("POST", "/v1/sessions", {})[1]["id"]
            status, kept = server.upload(session, "kept.csv", b"a,b\n1,2\n")
            self.assertEqual(status, 201)
            with open(filler, "wb") as f:  # the disk fills up
                try:
                    while True:
                        f.write(b"\0" * (1 << 20))
                        f.flush()
                except OSError:
                    pass

            status, r = server.request("POST", "/v1/execute", {"code": "open('big.bin', 'wb').write(b'x' * 10_000_000)"})
            self.assertEqual(status, 200)
            self.assertEqual(r["status"], "error")
            self.assertIn("No space left on device", r["error"]["value"])
            self.assertEqual(r["files"], [])
            # A figure that cannot be stored fails the execution, by name, rather than vanish from an `ok`.
            status, r = server.request("POST", "/v1/execute", {"code": "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"})
            self.assertEqual((status, r["status"], r["error"]["name"]), (200, "error", "StorageError"), r)
            self.assertIn("figure-1.png", r["error"]["value"])
            self.assertIn("No space left on device", r["error"]["value"])
            self.assertEqual((r["displays"], r["files"]), ([], []))
            status, r = server.upload(session, "big.bin", os.urandom(8 << 20))
            self.assertEqual(status, 507, r)
            self.assertEqual(r["error"]["code"], "insufficient_storage")
            # The cell's write lands in the session's /mnt/data (a tmpfs of its byte budget); what cannot be saved to
            # the full disk is said, and the file stays in /mnt/data, to be saved once there is room.
            status, r = server.request("POST", "/v1/execute", {"code": "open('cell.bin', 'wb').write(b'y' * 5_000_000)", "session_id": session})
            self.assertEqual((status, r["status"], r["error"]["name"]), (200, "error", "StorageError"), r)
            self.assertIn("No space left on device", r["error"]["value"])
            # Nothing half-written is kept or served.
            self.assertEqual(integrity(data), ([], [], []))
            status, listing = server.request("GET", f"/v1/sessions/{session}/files")
            for f in listing["data"]:
                status, body = server.download(f)
                self.assertEqual((status, hashlib.sha256(body).hexdigest(), len(body)), (200, f["sha256"], f["size_bytes"]), f)
            self.assertEqual([f["name"] for f in listing["data"]], ["kept.csv"])

            os.unlink(filler)  # space returns
            server.wait_healthy()
            status, r = server.request("POST", "/v1/execute", {"code": "open('after.bin', 'wb').write(b'z' * 1_000_000)\n'ok'", "session_id": session})
            self.assertEqual((status, r["status"]), (200, "ok"), r)
            self.assertEqual([f["name"] for f in r["files"]], ["after.bin", "cell.bin"])
            for f, size in zip(r["files"], (1_000_000, 5_000_000)):  # whole, never half
                status, body = server.download(f)
                self.assertEqual((status, len(body)), (200, size))
            status, _ = server.upload(session, "again.csv", b"c\n3\n")
            self.assertEqual(status, 201)
        finally:
            server.stop()
            subprocess.run(["umount", "-l", data])


if __name__ == "__main__":
    unittest.main()
