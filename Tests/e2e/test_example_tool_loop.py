"""Runs examples/python_tool_loop.py against the real `codeinterp serve` and a scripted Chat Completions server
written here (the model's two turns: a tool call that draws a chart, then an answer linking
sandbox:/mnt/data/chart.png). The example uses the real `openai` package; only the model is scripted.

Needs CODEINTERP_URL and CODEINTERP_API_KEY (scripts/test starts the server).
"""
import importlib.util
import json
import os
import subprocess
import sys
import threading
import unittest
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
URL = os.environ["CODEINTERP_URL"].rstrip("/")

CHART_CODE = """
import matplotlib.pyplot as plt
plt.plot([1, 4, 9, 16])
plt.title("squares")
plt.savefig("chart.png")
print("saved chart.png")
"""
ANSWER = "Here is the chart: [chart.png](sandbox:/mnt/data/chart.png)."


class ScriptedModel(BaseHTTPRequestHandler):
    """Turn 1: call execute_python. Turn 2: answer with a sandbox: link. Records every request body."""
    requests = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        if len(type(self).requests) == 1:
            message = {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_chart", "type": "function",
                "function": {"name": "execute_python", "arguments": json.dumps({"code": CHART_CODE, "session_id": None})},
            }]}
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": ANSWER}
            finish = "stop"
        payload = json.dumps({
            "id": f"chatcmpl-{len(type(self).requests)}", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def load_example():
    spec = importlib.util.spec_from_file_location("python_tool_loop", os.path.join(ROOT, "examples", "python_tool_loop.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ExampleToolLoop(unittest.TestCase):
    def setUp(self):
        ScriptedModel.requests = []
        self.model = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedModel)
        threading.Thread(target=self.model.serve_forever, daemon=True).start()
        self.saved = {k: os.environ.get(k) for k in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "MODEL")}
        os.environ["OPENAI_BASE_URL"] = f"http://127.0.0.1:{self.model.server_address[1]}/v1"
        os.environ["OPENAI_API_KEY"] = "scripted"
        os.environ["MODEL"] = "scripted-model"

    def tearDown(self):
        self.model.shutdown()
        self.model.server_close()
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def test_tool_loop_produces_the_chart_and_a_download_link(self):
        text, annotations = load_example().chat("Plot the first squares and give me the PNG.")

        first, second = ScriptedModel.requests
        # The model was offered codeinterp's tool, in the Chat Completions shape.
        self.assertEqual([t["function"]["name"] for t in first["tools"]], ["execute_python"])
        # The second turn carries the tool result: the chart was produced.
        tool_message = second["messages"][-1]
        self.assertEqual(tool_message["role"], "tool")
        self.assertEqual(tool_message["tool_call_id"], "call_chart")
        self.assertIn("saved chart.png", tool_message["content"])
        self.assertIn("chart.png", tool_message["content"])

        # The final answer's sandbox: link is now a signed URL of the server.
        self.assertNotIn("sandbox:", text)
        self.assertEqual([a["filename"] for a in annotations], ["chart.png"])
        url = annotations[0]["url"]
        self.assertTrue(url.startswith(URL + "/v1/files/"), url)
        self.assertEqual(text[annotations[0]["start_index"]:annotations[0]["end_index"]], url)
        with urllib.request.urlopen(url, timeout=30) as response:  # no key: the URL is signed
            self.assertEqual(response.headers.get_content_type(), "image/png")
            self.assertEqual(response.read(8), b"\x89PNG\r\n\x1a\n")


class ExampleToolLoopOffline(unittest.TestCase):
    """The example run by hand as a new user would, with no model configured: it says the model is scripted and
    runs the whole loop against codeinterp without network or API key."""

    def run_example(self, **env):
        environment = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        environment.update(env)
        return subprocess.run([sys.executable, os.path.join(ROOT, "examples", "python_tool_loop.py")],
                              capture_output=True, text=True, timeout=300, env=environment)

    def test_without_an_openai_key_the_scripted_model_answers(self):
        run = self.run_example()
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        self.assertIn("the model is scripted", run.stderr)
        self.assertNotIn("Traceback", run.stderr)
        self.assertIn("North sold the most", run.stdout)
        self.assertNotIn("sandbox:", run.stdout)
        links = dict(line.strip().split(": ", 1) for line in run.stdout.splitlines() if line.startswith("  "))
        self.assertEqual(set(links), {"chart.png", "sales.csv"})
        with urllib.request.urlopen(links["chart.png"], timeout=30) as response:  # a signed URL: no key needed
            self.assertEqual(response.read(8), b"\x89PNG\r\n\x1a\n")

    def test_a_missing_or_wrong_codeinterp_key_is_explained(self):
        missing = self.run_example(CODEINTERP_API_KEY="")
        self.assertEqual(missing.returncode, 1)
        self.assertIn("CODEINTERP_API_KEY is not set", missing.stderr)
        self.assertNotIn("Traceback", missing.stderr)
        wrong = self.run_example(CODEINTERP_API_KEY="not-the-key")
        self.assertEqual(wrong.returncode, 1)
        self.assertIn("answered 401", wrong.stderr)
        self.assertNotIn("Traceback", wrong.stderr)


class ExampleCurl(unittest.TestCase):
    def test_curl_walkthrough_runs(self):
        run = subprocess.run(["bash", os.path.join(ROOT, "examples", "curl.sh")], capture_output=True, text=True,
                             timeout=300)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        self.assertIn("ok 10\n", run.stdout)
        self.assertIn("/mnt/data/sales.csv\n210\n", run.stdout)  # uploaded, then read by the session
        self.assertIn("chart.png is a PNG\n", run.stdout)
        # The tool result links the file it wrote; the resolved answer has a download URL instead of sandbox:.
        self.assertIn("link it for the user as sandbox:/mnt/data/hi.txt", run.stdout)
        self.assertIn("Download [hi.txt](" + URL + "/v1/files/", run.stdout)


if __name__ == "__main__":
    unittest.main()
