"""`codeinterp chat` with its OpenAI-compatible provider against a scripted Chat Completions server written here,
streamed the way real endpoints stream (SSE chunks, tool-call deltas split across chunks, `data: [DONE]`).
The first request is refused with 429 + Retry-After to show the backoff; a second server refuses the key.

Needs the built binary: CODEINTERP_BIN (default .build/debug/codeinterp). Runs the sandbox in-process (no server).
"""
import json
import os
import subprocess
import tempfile
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CODEINTERP_BIN", os.path.join(ROOT, ".build/debug/codeinterp"))

CODE = "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.savefig('chart.png')\nprint('sum', 1 + 4 + 9)"
ARGUMENTS = json.dumps({"code": CODE, "session_id": None})
ANSWER = "The squares add up to 14. Chart: [chart.png](sandbox:/mnt/data/chart.png)"


def chunk(delta, finish=None):
    return {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0, "model": "fake",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


class StreamingModel(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.headers.get("Authorization"), body))
        turn = len(type(self).requests)
        if turn == 1:
            payload = b'{"error":{"message":"slow down","type":"rate_limit_error","param":null,"code":null}}'
            self.send_response(429)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if turn == 2:
            half = len(ARGUMENTS) // 2
            events = [
                chunk({"role": "assistant", "content": "Let me compute. "}),
                chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                       "function": {"name": "execute_python", "arguments": ""}}]}),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": ARGUMENTS[:half]}}]}),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": ARGUMENTS[half:]}}]}),
                chunk({}, "tool_calls"),
            ]
        else:
            events = [chunk({"role": "assistant", "content": ANSWER[:20]}), chunk({"content": ANSWER[20:]}),
                      chunk({}, "stop")]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in [json.dumps(e) for e in events] + ["[DONE]"]:
            data = f"data: {event}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


class RefusingModel(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        payload = b'{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def chat(base_url, out, *messages):
    env = dict(os.environ, OPENAI_API_KEY="sk-test", CODEINTERP_DATA_DIR=tempfile.mkdtemp())
    args = [BIN, "chat", "--base-url", base_url, "--model", "fake", "--out", out]
    for message in messages:
        args += ["--message", message]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)


class OpenAICompatibleProvider(unittest.TestCase):
    def test_streamed_tool_loop_with_backoff(self):
        StreamingModel.requests = []
        server = serve(StreamingModel)
        out = tempfile.mkdtemp()
        try:
            run = chat(f"http://127.0.0.1:{server.server_port}/v1", out, "Add the squares and chart them")
        finally:
            server.shutdown()
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        shown = run.stdout + run.stderr
        self.assertIn("429", shown, "the backoff was not shown")
        self.assertIn("Let me compute.", run.stdout)
        self.assertIn("The squares add up to 14.", run.stdout)
        # The answer streams as the model writes it; its sandbox: link is then resolved to the saved file.
        self.assertIn(f"link: chart.png -> file://{out}/chart.png", run.stdout)
        with open(os.path.join(out, "chart.png"), "rb") as f:
            self.assertTrue(f.read().startswith(b"\x89PNG"))
        # What the model was sent: the key, the tool, and then the tool's result for call_1.
        self.assertEqual(len(StreamingModel.requests), 3)
        key, first = StreamingModel.requests[1]
        self.assertEqual(key, "Bearer sk-test")
        self.assertTrue(first["stream"])
        self.assertEqual(first["tools"][0]["function"]["name"], "execute_python")
        _, last = StreamingModel.requests[2]
        results = [m for m in last["messages"] if m.get("role") == "tool"]
        self.assertEqual(results[0]["tool_call_id"], "call_1")
        self.assertIn("sum 14", results[0]["content"])

    def test_a_refused_key_is_said_plainly(self):
        server = serve(RefusingModel)
        try:
            run = chat(f"http://127.0.0.1:{server.server_port}/v1", tempfile.mkdtemp(), "hello")
        finally:
            server.shutdown()
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("401", run.stdout + run.stderr)
        self.assertIn("Incorrect API key provided", run.stdout + run.stderr)


if __name__ == "__main__":
    unittest.main()
