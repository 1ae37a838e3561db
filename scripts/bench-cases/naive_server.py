"""The do-it-yourself alternative many chat backends start with: an HTTP endpoint that runs each snippet in a
fresh `python3` subprocess (no sandbox beyond a timeout). Same request shape as codeinterp's /v1/execute, so the
same load generator measures both.

    naive_server.py PORT
"""
import json
import subprocess
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with tempfile.TemporaryDirectory() as workdir:
            run = subprocess.run(["/usr/bin/python3", "-c", body["code"]], cwd=workdir, capture_output=True,
                                 text=True, timeout=60,
                                 env={"PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1",
                                      "OMP_NUM_THREADS": "1", "HOME": workdir})
        payload = json.dumps({"status": "ok" if run.returncode == 0 else "error", "stdout": run.stdout,
                              "stderr": run.stderr}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 resets connections at concurrency 32


Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
