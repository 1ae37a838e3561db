"""`codeinterp mcp` (stdio), `codeinterp chat` and `codeinterp run` next to a `codeinterp serve` of the same data
directory: their code runs in the server (proved by the server's /metrics), they fall back to an engine of their
own once it is gone, and `codeinterp packages install|remove` reaches the running server without a restart by
hand (its worker is replaced; a profile's `preload` is imported by the new one).

Each class starts its own server on a fresh data directory. Env: CODEINTERP_BIN (default .build/debug/codeinterp).
Run inside the sandbox's outer namespaces like the other end-to-end tests.
"""
import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from mcp import Client, StdioServerParameters

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CODEINTERP_BIN", os.path.join(ROOT, ".build/debug/codeinterp"))
PROFILES = os.path.join(ROOT, "sandbox-profiles")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self.socket_path)


class ServedDataDirectory:
    """A `codeinterp serve` on a fresh data directory, and the CLI pointed at that directory."""

    def __init__(self, profiles=PROFILES):
        self.work = tempfile.mkdtemp(prefix="codeinterp-cli-served-")
        self.data = os.path.join(self.work, "data")
        self.env = dict(os.environ)
        self.env["CODEINTERP_DATA_DIR"] = self.data
        self.env["CODEINTERP_PROFILES_DIR"] = profiles
        self.env.setdefault("CODEINTERP_PRELOAD", "numpy,pandas,matplotlib.pyplot")
        self.log_path = os.path.join(self.work, "server.log")
        self.server = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.server = subprocess.Popen([BIN, "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", self.data,
                                            "--api-key", "cli-through-server"], env=self.env, stdout=log, stderr=log)
        # Healthy once the zygote has preloaded, however long a cold start takes; the bound only stops a deadlock.
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise AssertionError("the server exited during start-up:\n" + self.log())
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("the server never became healthy:\n" + self.log())

    def stop(self):
        if self.server and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            self.server.wait(timeout=120)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def get(self, path):
        conn = UnixHTTPConnection(os.path.join(self.data, "codeinterp.sock"))
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def executions(self):
        """Executions the server has finished, whatever their status (from its /metrics)."""
        status, text = self.get("/metrics")
        assert status == 200, text
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                   if line.startswith("codeinterp_executions_total{"))

    def cli(self, *args, timeout=600):
        return subprocess.run([BIN, *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def mcp(self, body, *args):
        params = StdioServerParameters(command=BIN, args=["mcp", *args], env=self.env)

        async def main():
            async with Client(params, mode="legacy") as client:
                return await body(client)
        return asyncio.run(main())


def script_turns(code, answer):
    """Scripted assistant turns: one call of execute_python, then the answer."""
    return [{"content": "", "tool_calls": [{"id": "call_1", "name": "execute_python", "arguments": {"code": code}}]},
            {"content": answer}]


CHART = "import matplotlib.pyplot as plt\nplt.plot([3, 1, 2])\nplt.savefig('chart.png')\nanswer = 41\nprint('drawn')"


class McpAndChatThroughTheServer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.served = ServedDataDirectory()
        cls.served.start()

    @classmethod
    def tearDownClass(cls):
        cls.served.cleanup()

    def test_mcp_over_stdio_runs_its_calls_in_the_server(self):
        before = self.served.executions()

        async def body(client):
            tools = await client.list_tools()
            started = time.monotonic()
            chart = await client.call_tool("execute_python", {"code": CHART})
            later = await client.call_tool("execute_python", {"code": "answer + 1"})
            return tools, chart, later, time.monotonic() - started
        tools, chart, later, _ = self.served.mcp(body)
        self.assertEqual([t.name for t in tools.tools], ["execute_python"])
        self.assertFalse(chart.is_error, chart.content[0].text)
        self.assertIn("drawn", chart.content[0].text)
        links = [c for c in chart.content if c.type == "resource_link"]
        self.assertEqual([l.name for l in links], ["chart.png"])
        with open(str(links[0].uri)[len("file://"):], "rb") as f:
            self.assertEqual(f.read()[:4], b"\x89PNG")
        # The session persists between calls: it is the server's.
        self.assertFalse(later.is_error, later.content[0].text)
        self.assertIn("42", later.content[0].text)
        self.assertEqual(self.served.executions() - before, 2, "the calls did not run in the server")

    def test_mcp_standalone_does_not_use_the_server(self):
        before = self.served.executions()

        async def body(client):
            return await client.call_tool("execute_python", {"code": "6 * 7"})
        result = self.served.mcp(body, "--standalone")
        self.assertFalse(result.is_error, result.content[0].text)
        self.assertIn("42", result.content[0].text)
        self.assertEqual(self.served.executions(), before, "--standalone went through the server")

    def test_chat_with_the_scripted_model_runs_its_code_in_the_server(self):
        before = self.served.executions()
        out = os.path.join(self.served.work, "chat-out")
        r = self.served.cli("chat", "--script", os.path.join(ROOT, "examples/scripted-demo.json"),
                            "--message", "Summarise the sales and draw a chart", "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("total sales 1340", r.stdout)
        with open(os.path.join(out, "chart.png"), "rb") as f:
            self.assertEqual(f.read()[:4], b"\x89PNG")
        with open(os.path.join(out, "transcript.md")) as f:
            calls = f.read().count("```python")
        self.assertGreater(calls, 0)
        self.assertEqual(self.served.executions() - before, calls, "the chat's code did not run in the server")

        # Resumed, the conversation's session is still the server's: its files are there.
        conversation = r.stderr.split("--resume ")[-1].split(")")[0].strip()
        # A resumed script goes on after the turns already in the conversation: the demo's, then one more.
        with open(os.path.join(ROOT, "examples/scripted-demo.json")) as f:
            demo = json.load(f)
        demo["turns"] += script_turns("import os\nsorted(os.listdir('.'))", "listed")
        script = os.path.join(self.served.work, "ls.json")
        with open(script, "w") as f:
            json.dump(demo, f)
        again = self.served.cli("chat", "--script", script, "--resume", conversation, "--message", "what files?")
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertIn("chart.png", again.stdout)
        self.assertEqual(self.served.executions() - before, calls + 1)


class FallbackWhenTheServerStops(unittest.TestCase):
    def setUp(self):
        self.served = ServedDataDirectory()
        self.served.start()

    def tearDown(self):
        self.served.cleanup()

    def test_mcp_goes_on_in_an_engine_of_its_own(self):
        served = self.served
        counts = []

        async def body(client):
            first = await client.call_tool("execute_python", {"code": "open('kept.txt', 'w').write('x')\nprint('served')"})
            counts.append(served.executions())
            served.stop()
            second = await client.call_tool("execute_python", {"code": "import os\nprint(os.path.exists('kept.txt'))"})
            return first, second
        first, second = served.mcp(body)
        self.assertFalse(first.is_error, first.content[0].text)
        self.assertEqual(counts, [1])
        # The session's files live in the data directory, so the engine of its own finds them.
        self.assertFalse(second.is_error, second.content[0].text)
        self.assertIn("True", second.content[0].text)

    def test_a_call_in_flight_when_the_server_dies_is_an_error_then_mcp_goes_on(self):
        served = self.served

        async def body(client):
            await client.call_tool("execute_python", {"code": "x = 1"})
            running = asyncio.ensure_future(client.call_tool(
                "execute_python", {"code": "import time\nprint('started', flush=True)\ntime.sleep(20)"}))
            await asyncio.sleep(3)
            served.server.kill()
            served.server.wait()
            interrupted = await asyncio.wait_for(running, 120)
            after = await client.call_tool("execute_python", {"code": "print('after')"})
            return interrupted, after
        interrupted, after = served.mcp(body)
        self.assertTrue(interrupted.is_error)
        self.assertIn("stopped while the code ran", interrupted.content[0].text)
        self.assertIn("server stopped answering during this execution", interrupted.content[0].text)
        self.assertFalse(after.is_error, after.content[0].text)
        self.assertIn("after", after.content[0].text)

    def test_chat_without_a_server_runs_standalone(self):
        self.served.stop()
        script = os.path.join(self.served.work, "one.json")
        with open(script, "w") as f:
            json.dump({"turns": script_turns("print(6 * 7)", "done")}, f)
        r = self.served.cli("chat", "--script", script, "--message", "go")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("42", r.stdout)


def build_wheel(work):
    """The small wheel the Swift packages test builds too (no network)."""
    source, wheels = os.path.join(work, "src"), os.path.join(work, "wheels")
    os.makedirs(os.path.join(source, "ci_demo_pkg"))
    with open(os.path.join(source, "ci_demo_pkg", "__init__.py"), "w") as f:
        f.write("def hello():\n    return 'hello from a wheel'\n")
    with open(os.path.join(source, "pyproject.toml"), "w") as f:
        f.write('[project]\nname = "ci-demo-pkg"\nversion = "1.2.3"\n'
                '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n')
    subprocess.run(["/usr/bin/python3", "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", wheels, source], check=True, capture_output=True)
    return wheels


class PackagesReachTheRunningServer(unittest.TestCase):
    def setUp(self):
        # A default profile that adds a preload of the package: the zygote imports it when it can.
        self.profiles = tempfile.mkdtemp(prefix="codeinterp-profiles-")
        with open(os.path.join(self.profiles, "default.json"), "w") as f:
            json.dump({"name": "default", "extends": os.path.join(PROFILES, "default.json"), "preload": ["ci_demo_pkg"]}, f)
        self.served = ServedDataDirectory(profiles=self.profiles)
        self.wheels = build_wheel(self.served.work)
        self.served.start()

    def tearDown(self):
        self.served.cleanup()
        shutil.rmtree(self.profiles, ignore_errors=True)

    def run_json(self, code):
        r = self.served.cli("run", "--json", "-c", code)
        self.assertIn(r.returncode, (0, 1), r.stderr)
        return json.loads(r.stdout)

    def wait_for(self, code, expected, what):
        """Runs `code` through the server until its value is `expected` (the worker is replaced in the background)."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            result = self.run_json(code)
            if (result.get("result") or {}).get("text/plain") == expected:
                return result
            time.sleep(0.5)
        self.fail(f"{what}: never {expected}; last result {result}\nserver log:\n{self.served.log()[-3000:]}")

    def test_install_and_remove_replace_the_worker_gracefully(self):
        # Before the install the preload fails: said in the log and by doctor, not fatal.
        self.assertIn("some preloads failed", self.served.log())
        doctor = self.served.cli("doctor")
        self.assertEqual(doctor.returncode, 0, doctor.stderr)
        self.assertRegex(doctor.stdout, r"FAILED to import .*ci_demo_pkg")
        before = self.served.executions()

        # An execution in flight while the packages change finishes in the old worker.
        slow = subprocess.Popen([BIN, "run", "--json", "-c", "import time\ntime.sleep(6)\nprint('finished')"],
                                env=self.served.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        installed = self.served.cli("packages", "install", "ci-demo-pkg", "--find-links", self.wheels)
        self.assertEqual(installed.returncode, 0, installed.stderr)
        self.assertIn("running server replaces its worker", installed.stdout)

        # Later executions see the package, imported by the new zygote (the profile's preload), from a child the
        # warm pool forked ahead from the new worker.
        code = "import sys\n('ci_demo_pkg' in sys.modules, sys.modules['ci_demo_pkg'].hello())"
        deadline = time.monotonic() + 300
        while True:
            result = self.run_json(code)
            if result.get("result", {}) and result["result"].get("text/plain") == "(True, 'hello from a wheel')" \
                    and result["usage"].get("warm_start"):
                break
            if time.monotonic() > deadline:
                self.fail(f"the new worker never answered: {result}\nserver log:\n{self.served.log()[-3000:]}")
            time.sleep(0.5)
        out, err = slow.communicate(timeout=300)
        self.assertEqual(slow.returncode, 0, err)
        self.assertEqual(json.loads(out)["stdout"], "finished\n")
        self.assertIn("worker replaced", self.served.log())
        self.assertGreater(self.served.executions(), before, "the runs did not go through the server")

        removed = self.served.cli("packages", "remove", "ci-demo-pkg")
        self.assertEqual(removed.returncode, 0, removed.stderr)
        self.wait_for("import importlib.util\nimportlib.util.find_spec('ci_demo_pkg') is None", "True", "the removal")


if __name__ == "__main__":
    unittest.main()
