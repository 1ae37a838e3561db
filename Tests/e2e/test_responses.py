"""The Responses API with the hosted `code_interpreter` emulated, end to end: the official `openai` package against a
`codeinterp serve` of this test's own, whose model is a scripted Chat Completions server written here (streamed the
way real endpoints stream: SSE chunks, tool-call deltas split across chunks, `data: [DONE]`; or one JSON answer).

Needs the built binary: CODEINTERP_BIN (default .build/debug/codeinterp).
"""
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CODEINTERP_BIN", os.path.join(ROOT, ".build/debug/codeinterp"))
KEY = "e2e-responses-key"
UPSTREAM_KEY = "sk-upstream-test"
CI = [{"type": "code_interpreter", "container": {"type": "auto"}}]

CHART = ("import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.title('squares')\nplt.savefig('chart.png')\n"
         "plt.show()\nprint('sum', 1 + 4 + 9)")


# MARK: the scripted model server


def chunk(delta, finish=None):
    return {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0, "model": "fake",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def text_turn(text, pieces=3):
    size = max(1, len(text) // pieces)
    parts = [text[i:i + size] for i in range(0, len(text), size)]
    return {"stream": [chunk({"role": "assistant", "content": parts[0]})] + [chunk({"content": p}) for p in parts[1:]]
            + [chunk({}, "stop"), {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}]}


def tool_turn(name, arguments, call_id="call_1", pieces=4, text=None):
    size = max(1, len(arguments) // pieces)
    parts = [arguments[i:i + size] for i in range(0, len(arguments), size)]
    events = [chunk({"role": "assistant", "content": text})] if text else []
    events.append(chunk({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                         "function": {"name": name, "arguments": ""}}]}))
    events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in parts]
    events.append(chunk({}, "tool_calls"))
    return {"stream": events}


def code_turn(code, call_id="call_1", **kw):
    return tool_turn("execute_python", json.dumps({"code": code}), call_id, **kw)


def json_text_turn(text):
    return {"json": {"id": "chatcmpl-y", "object": "chat.completion", "created": 0, "model": "fake",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}}


class QuietHandler(BaseHTTPRequestHandler):
    """A fake model server's handler: no request log, and a connection codeinterp closes is not an error."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle(self):
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):
            pass  # codeinterp closed a kept-alive connection (it stopped, or a test dropped the stream)


class Model(QuietHandler):
    """Answers each POST with the next entry of `script`; records (Authorization, body) of every request."""
    script = []
    requests = []
    lock = threading.Lock()

    def do_GET(self):
        if self.path.endswith("/models"):
            self.reply(200, {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "test"}]})
        else:
            self.reply(404, {"error": {"message": "no"}})

    def reply(self, status, body, headers=None):
        payload = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with Model.lock:
            Model.requests.append((self.headers.get("Authorization"), body))
            entry = Model.script.pop(0) if Model.script else text_turn("(the script is over)")
        if "status" in entry:
            self.reply(entry["status"], entry.get("body", {"error": {"message": "scripted failure"}}), entry.get("headers"))
            return
        if "json" in entry:
            self.reply(200, entry["json"])
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = [json.dumps(e) for e in entry["stream"]] + ["[DONE]"]
        drop = entry.get("drop_after")
        for n, event in enumerate(events):
            if drop is not None and n == drop:
                self.wfile.flush()
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self.close_connection = True
                return
            data = f"data: {event}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """A `codeinterp serve` whose model is the scripted server; restartable on the same data directory."""

    def __init__(self, upstream_url, extra=()):
        self.port = free_port()
        self.data = tempfile.mkdtemp()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [BIN, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", self.data,
                     "--api-key", KEY, "--upstream-base-url", upstream_url, "--upstream-api-key-env", "E2E_UPSTREAM_KEY",
                     *extra]
        self.process = None
        self.start()

    def start(self):
        env = dict(os.environ, E2E_UPSTREAM_KEY=UPSTREAM_KEY)
        self.log = open(os.path.join(self.data, "server.log"), "ab")
        self.process = subprocess.Popen(self.args, env=env, stdout=self.log, stderr=self.log)
        # Healthy once its worker has preloaded, however long that takes on a busy machine (the bound only keeps a
        # deadlock from hanging the run).
        deadline = time.time() + 600
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1).read()
                return
            except Exception:
                if self.process.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError("the server did not start: " + open(os.path.join(self.data, "server.log")).read()[-2000:])

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def client(self, **kw):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=KEY, max_retries=kw.pop("max_retries", 0), **kw)

    def raw(self, method, path, body=None):
        data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {KEY}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


def collapse(types):
    out = []
    for t in types:
        if not out or out[-1] != t:
            out.append(t)
    return out


class ResponsesWithCodeInterpreter(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = ThreadingHTTPServer(("127.0.0.1", 0), Model)
        cls.model.daemon_threads = True
        threading.Thread(target=cls.model.serve_forever, daemon=True).start()
        cls.server = Server(f"http://127.0.0.1:{cls.model.server_port}/v1")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.model.shutdown()
        cls.model.server_close()

    def setUp(self):
        with Model.lock:
            Model.script = []
            Model.requests = []
        self.client = self.server.client()

    def play(self, *entries):
        with Model.lock:
            Model.script = list(entries)

    def sent(self):
        with Model.lock:
            return [body for _, body in Model.requests]

    # MARK: the roadmap's streamed flow

    def test_streamed_code_outputs_chart_and_citation(self):
        answer = "The squares add up to 14. Here is the chart: [chart.png](sandbox:/mnt/data/chart.png)"
        self.play(code_turn(CHART, text="Let me compute. "), text_turn(answer))
        stream = self.client.responses.create(
            model="o4-mini", input=[{"role": "user", "content": "Add the squares of 1..3 and chart them"}],
            stream=True, store=True, tools=CI, include=["code_interpreter_call.outputs"])
        events = list(stream)
        types = [e.type for e in events]
        self.assertEqual(collapse(types), [
            "response.created", "response.in_progress",
            "response.output_item.added", "response.content_part.added", "response.output_text.delta",
            "response.output_text.done", "response.content_part.done", "response.output_item.done",
            "response.output_item.added", "response.code_interpreter_call.in_progress",
            "response.code_interpreter_call_code.delta", "response.code_interpreter_call_code.done",
            "response.code_interpreter_call.interpreting", "response.code_interpreter_call.completed",
            "response.output_item.done",
            "response.output_item.added", "response.content_part.added", "response.output_text.delta",
            "response.output_text.annotation.added", "response.output_text.done", "response.content_part.done",
            "response.output_item.done", "response.completed"])
        numbers = [e.sequence_number for e in events]
        self.assertEqual(numbers, sorted(numbers))
        self.assertEqual(len(set(numbers)), len(numbers))
        # The code streamed in pieces as the model wrote it (its arguments came in 4 chunks).
        deltas = [e.delta for e in events if e.type == "response.code_interpreter_call_code.delta"]
        self.assertGreater(len(deltas), 1)
        self.assertEqual("".join(deltas), CHART)
        added = next(e for e in events if e.type == "response.output_item.added" and e.item.type == "code_interpreter_call")
        self.assertEqual(added.item.status, "in_progress")

        response = events[-1].response
        self.assertEqual(response.status, "completed")
        self.assertEqual([o.type for o in response.output], ["message", "code_interpreter_call", "message"])
        call = response.output[1]
        self.assertTrue(call.id.startswith("ci_"))
        self.assertEqual(call.code, CHART)
        self.assertEqual(call.status, "completed")
        logs = [o.logs for o in call.outputs if o.type == "logs"]
        self.assertIn("sum 14", logs[0])
        images = [o.url for o in call.outputs if o.type == "image"]
        self.assertEqual(len(images), 1)
        self.assertTrue(images[0].startswith("data:image/png;base64,"))
        self.assertTrue(base64.b64decode(images[0].split(",", 1)[1]).startswith(b"\x89PNG"))
        self.assertEqual(response.output_text, "Let me compute. " + answer)
        self.assertEqual(response.usage.input_tokens, 11)

        text = response.output[2].content[0]
        self.assertEqual(len(text.annotations), 2, text.annotations)
        citation, figure = text.annotations
        self.assertEqual(citation.type, "container_file_citation")
        self.assertEqual(citation.container_id, call.container_id)
        self.assertEqual(citation.filename, "chart.png")
        self.assertEqual(text.text[citation.start_index:citation.end_index], "sandbox:/mnt/data/chart.png")
        annotation_event = next(e for e in events if e.type == "response.output_text.annotation.added")
        self.assertEqual(annotation_event.annotation["file_id"], citation.file_id)
        # The chart downloads through the container files API, as from OpenAI.
        png = self.client.containers.files.content.retrieve(citation.file_id, container_id=citation.container_id).read()
        self.assertTrue(png.startswith(b"\x89PNG"))
        # The figure plt.show() displayed is cited too (zero-width at 0, as OpenAI does) and downloads the same way.
        self.assertEqual((figure.type, figure.start_index, figure.end_index), ("container_file_citation", 0, 0))
        self.assertNotEqual(figure.file_id, citation.file_id)
        shown = self.client.containers.files.content.retrieve(figure.file_id, container_id=figure.container_id).read()
        self.assertEqual(shown, base64.b64decode(images[0].split(",", 1)[1]))

        # What the model was sent: the key, code_interpreter as a function tool, then the code's result.
        with Model.lock:
            key, first = Model.requests[0]
        self.assertEqual(key, f"Bearer {UPSTREAM_KEY}")
        self.assertTrue(first["stream"])
        self.assertEqual(first["model"], "o4-mini")
        self.assertEqual(first["tools"][0]["function"]["name"], "execute_python")
        second = self.sent()[1]
        tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
        self.assertEqual(tool_messages[0]["tool_call_id"], call.id)
        self.assertIn("sum 14", tool_messages[0]["content"])
        assistant = [m for m in second["messages"] if m["role"] == "assistant"][0]
        self.assertEqual(assistant["content"], "Let me compute. ")
        self.assertEqual(json.loads(assistant["tool_calls"][0]["function"]["arguments"]), {"code": CHART})

        # Stored: retrievable, outputs shown because the create request included them.
        again = self.client.responses.retrieve(response.id)
        self.assertEqual(again.output[1].outputs[0].type, "logs")
        self.assertEqual(again.output_text, response.output_text)

    def test_stream_helper_final_response_with_a_json_upstream(self):
        # The model server answers without streaming (one JSON completion): the stream is the same to the caller.
        self.play({"json": {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                       "role": "assistant", "content": None, "tool_calls": [{"id": "call_j", "type": "function", "function": {
                           "name": "execute_python", "arguments": json.dumps({"code": "sum(range(10))"})}}]}}]}},
                  json_text_turn("The sum is 45."))
        with self.client.responses.stream(model="m", input="Sum 0..9", tools=CI) as stream:
            kinds = [event.type for event in stream]
            final = stream.get_final_response()
        self.assertIn("response.code_interpreter_call.completed", kinds)
        self.assertEqual(final.output_text, "The sum is 45.")
        self.assertEqual(final.output[0].type, "code_interpreter_call")
        self.assertIsNone(final.output[0].outputs, "outputs only with include")
        self.assertIn("45", [m for m in self.sent()[1]["messages"] if m["role"] == "tool"][0]["content"])

    # MARK: state across turns

    def test_previous_response_id_keeps_the_container(self):
        self.play(code_turn("secret = 41"), text_turn("Stored."), code_turn("secret + 1", call_id="call_2"),
                  text_turn("It is 42."))
        first = self.client.responses.create(model="m", input="remember 41", tools=CI)
        self.assertEqual(first.output_text, "Stored.")
        second = self.client.responses.create(model="m", input="add one", tools=CI, previous_response_id=first.id,
                                              include=["code_interpreter_call.outputs"])
        self.assertEqual(second.previous_response_id, first.id)
        self.assertEqual(second.output[0].container_id, first.output[0].container_id)
        self.assertEqual(second.output[0].outputs[0].logs, "42", "the variable of the first turn is still there")
        self.assertEqual(second.output_text, "It is 42.")
        # The model saw the first turn: its question, its code and the result.
        messages = self.sent()[2]["messages"]
        self.assertEqual(messages[0], {"role": "user", "content": "remember 41"})
        self.assertEqual(messages[-1], {"role": "user", "content": "add one"})
        items = list(self.client.responses.input_items.list(second.id))
        self.assertEqual([i.type for i in items], ["message"])
        self.assertEqual(items[0].content[0].text, "add one")
        # Deleted, it is gone, and so is continuing from it.
        self.client.responses.delete(first.id)
        with self.assertRaises(openai.NotFoundError):
            self.client.responses.retrieve(first.id)

    def test_caller_function_tool_round_trip(self):
        tools = CI + [{"type": "function", "name": "get_weather", "description": "Weather of a city",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
        self.play(tool_turn("get_weather", json.dumps({"city": "Oslo"}), call_id="call_w"), text_turn("Sunny, 21 C in Oslo."))
        first = self.client.responses.create(model="m", input="Weather in Oslo?", tools=tools)
        self.assertEqual([o.type for o in first.output], ["function_call"])
        call = first.output[0]
        self.assertEqual((call.name, call.call_id, json.loads(call.arguments)), ("get_weather", "call_w", {"city": "Oslo"}))
        second = self.client.responses.create(model="m", tools=tools, previous_response_id=first.id, input=[
            {"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"sky": "sunny", "c": 21})}])
        self.assertEqual(second.output_text, "Sunny, 21 C in Oslo.")
        messages = self.sent()[1]["messages"]
        self.assertEqual(messages[-2]["tool_calls"][0]["function"]["name"], "get_weather")
        self.assertEqual(messages[-1], {"role": "tool", "tool_call_id": "call_w", "content": '{"sky": "sunny", "c": 21}'})
        names = [t["function"]["name"] for t in self.sent()[0]["tools"]]
        self.assertEqual(names, ["execute_python", "get_weather"])

    def test_request_parameters_reach_the_model_and_come_back(self):
        truncated = json_text_turn('{"answer": 4')
        truncated["json"]["choices"][0]["finish_reason"] = "length"
        self.play(truncated)
        response = self.client.responses.create(
            model="m", instructions="Answer in JSON.", input="2+2?", max_output_tokens=64, temperature=0.2,
            text={"format": {"type": "json_object"}}, metadata={"ticket": "T-1"}, store=False)
        body = self.sent()[0]
        self.assertEqual(body["messages"][0], {"role": "system", "content": "Answer in JSON."})
        self.assertEqual((body["max_tokens"], body["temperature"]), (64, 0.2))
        self.assertEqual(body["response_format"], {"type": "json_object"})
        self.assertNotIn("tools", body, "no tools were given, so none are offered")
        self.assertEqual(response.status, "incomplete")
        self.assertEqual(response.incomplete_details.reason, "max_output_tokens")
        self.assertEqual(response.output_text, '{"answer": 4')
        self.assertEqual((response.instructions, response.metadata, response.temperature, response.max_output_tokens),
                         ("Answer in JSON.", {"ticket": "T-1"}, 0.2, 64))
        self.assertIs(response.store, False)
        with self.assertRaises(openai.NotFoundError):
            self.client.responses.retrieve(response.id)

    # MARK: the model server failing

    def test_upstream_429_is_a_rate_limit_the_sdk_retries(self):
        limited = {"status": 429, "headers": {"Retry-After": "1"},
                   "body": {"error": {"message": "slow down", "type": "rate_limit_error"}}}
        self.play(limited)
        with self.assertRaises(openai.RateLimitError) as caught:
            self.client.responses.create(model="m", input="hi")
        self.assertEqual(caught.exception.response.headers["retry-after"], "1")
        self.assertIn("slow down", caught.exception.message)
        # With retries (the SDK default), the same request succeeds after waiting Retry-After; streamed too.
        self.play(limited, text_turn("Hello!"))
        started = time.time()
        stream = self.server.client(max_retries=2).responses.create(model="m", input="hi", stream=True)
        events = list(stream)
        self.assertGreaterEqual(time.time() - started, 0.9)
        self.assertEqual(events[-1].type, "response.completed")
        self.assertEqual(events[-1].response.output_text, "Hello!")

    def test_upstream_500_401_and_a_dropped_stream(self):
        self.play({"status": 500, "body": {"error": {"message": "model crashed"}}})
        with self.assertRaises(openai.InternalServerError) as caught:
            self.client.responses.create(model="m", input="hi")
        self.assertEqual(caught.exception.status_code, 502)
        self.assertIn("model crashed", caught.exception.message)
        self.assertEqual(caught.exception.body["code"], "upstream_error")

        self.play({"status": 401, "body": {"error": {"message": "Incorrect API key provided"}}})
        with self.assertRaises(openai.InternalServerError) as caught:
            self.client.responses.create(model="m", input="hi")
        self.assertEqual(caught.exception.body["code"], "upstream_authentication_failed")
        self.assertIn("Incorrect API key provided", caught.exception.message)

        # Streamed, the model breaks off after its first words: the caller gets response.failed, not a hang.
        turn = text_turn("This answer never ends because the connection drops", pieces=4)
        turn["drop_after"] = 2
        self.play(turn)
        # A hang would end in the client's timeout (an exception), not in a list of events.
        events = list(self.client.with_options(timeout=120).responses.create(model="m", input="hi", stream=True))
        self.assertIn("response.output_text.delta", [e.type for e in events])
        self.assertEqual(events[-1].type, "response.failed")
        self.assertEqual(events[-1].response.status, "failed")
        self.assertEqual(events[-1].response.error.code, "upstream_disconnected")

        # Not streamed, the same drop is an error too.
        turn = text_turn("again dropped", pieces=4)
        turn["drop_after"] = 1
        self.play(turn)
        with self.assertRaises(openai.InternalServerError) as caught:
            self.client.responses.create(model="m", input="hi")
        self.assertEqual(caught.exception.body["code"], "upstream_disconnected")

    def test_a_client_that_goes_away_stops_the_loop(self):
        self.play(code_turn("import time\ntime.sleep(60)\nprint('too late')"), text_turn("never sent"))
        stream = self.client.responses.create(model="m", input="wait a minute", tools=CI, stream=True)
        response_id = container = None
        for event in stream:
            if event.type == "response.created":
                response_id = event.response.id
            if event.type == "response.output_item.added" and event.item.type == "code_interpreter_call":
                container = event.item.container_id
            if event.type == "response.code_interpreter_call.interpreting":
                break
        stream.close()
        started = time.time()
        # The sleeping cell is stopped: the container's next cell runs before the cell's own 30 s wall limit could
        # have ended it (what is measured is that limit, not how fast the machine is).
        wall_limit = 30
        while True:
            status, result = self.server.raw("POST", "/v1/execute", {"code": "print('free')", "session_id": container})
            # The engine may still be tearing the stopped cell down for a moment.
            if status != 503 or time.time() - started > wall_limit:
                break
            time.sleep(0.5)
        self.assertEqual(status, 200, result)
        self.assertIn("free", result["stdout"])
        self.assertLess(time.time() - started, wall_limit)
        # The model is not asked again, and nothing half-done is stored.
        self.assertEqual(len(self.sent()), 1)
        with self.assertRaises(openai.NotFoundError):
            self.client.responses.retrieve(response_id)

    # MARK: bad requests

    def test_bad_requests_get_openais_error_envelope(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            self.client.responses.create(model="m", input="hi", tools=[{"type": "web_search"}])
        self.assertEqual(caught.exception.param, "tools[0].type")
        self.assertEqual(caught.exception.code, "unsupported_tool")
        with self.assertRaises(openai.BadRequestError) as caught:
            self.client.responses.create(model="m", input="hi", previous_response_id="resp_doesnotexist")
        self.assertEqual(caught.exception.code, "previous_response_not_found")
        self.assertEqual(caught.exception.param, "previous_response_id")
        with self.assertRaises(openai.NotFoundError) as caught:
            self.client.responses.create(model="m", input="hi", tools=[
                {"type": "code_interpreter", "container": "cntr_00000000000000000000000000000000"}])
        self.assertIn("Container", caught.exception.message)
        with self.assertRaises(openai.NotFoundError):
            self.client.responses.create(model="m", input="hi", conversation="conv_nope")
        status, body = self.server.raw("POST", "/v1/responses", b'{"model": "m", "input": ')
        self.assertEqual(status, 400)
        self.assertEqual(set(body["error"]), {"message", "type", "param", "code"})
        self.assertEqual(body["error"]["type"], "invalid_request_error")
        self.assertEqual(self.sent(), [], "no bad request reached the model")

    def test_an_existing_container_by_id(self):
        container = self.client.containers.create(name="given")
        self.client.containers.files.create(container.id, file=("data.csv", b"x\n1\n2\n3\n", "text/csv"))
        self.play(code_turn("import pandas as pd\nint(pd.read_csv('data.csv').x.sum())"), text_turn("Six."))
        response = self.client.responses.create(model="m", input="sum x", include=["code_interpreter_call.outputs"],
                                                tools=[{"type": "code_interpreter", "container": container.id}])
        self.assertEqual(response.output[0].container_id, container.id)
        self.assertEqual(response.output[0].outputs[0].logs, "6")

    def test_a_file_attached_to_the_input_is_in_the_container(self):
        csv = base64.b64encode(b"x\n5\n6\n").decode()
        self.play(code_turn("import pandas as pd\nint(pd.read_csv('nums.csv').x.sum())"), text_turn("Eleven."))
        response = self.client.responses.create(model="m", tools=CI, include=["code_interpreter_call.outputs"], input=[
            {"role": "user", "content": [{"type": "input_text", "text": "Sum x"},
                                         {"type": "input_file", "filename": "nums.csv", "file_data": f"data:text/csv;base64,{csv}"}]}])
        self.assertEqual(response.output[0].outputs[0].logs, "11")
        user = self.sent()[0]["messages"][0]["content"]
        self.assertEqual(user[1], {"type": "text", "text": "[attached file: nums.csv; the Python tool finds it at /mnt/data/nums.csv]"})
        with self.assertRaises(openai.NotFoundError) as caught:
            self.client.responses.create(model="m", tools=CI, input=[{"role": "user", "content": [
                {"type": "input_file", "file_id": "00000000-0000-0000-0000-000000000000"}]}])
        self.assertEqual(caught.exception.param, "input[0].content[0].file_id")

    def test_models_lists_the_upstreams(self):
        self.assertEqual([m.id for m in self.client.models.list()], ["fake-model"])


class ResponsesModel(QuietHandler):
    """A model server that speaks the Responses API (as OpenAI and Azure do), streamed: turn 1 calls
    execute_python (arguments in pieces), turn 2 answers. Records every request body."""
    requests = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ResponsesModel.requests.append(body)
        arguments = json.dumps({"code": "import math\nmath.factorial(5)"})
        if len(ResponsesModel.requests) == 1:
            item = {"type": "function_call", "id": "fc_up", "call_id": "call_up", "name": "execute_python", "arguments": ""}
            events = [{"type": "response.created", "response": {"id": "resp_up", "status": "in_progress", "output": []}},
                      {"type": "response.output_item.added", "output_index": 0, "item": item}]
            events += [{"type": "response.function_call_arguments.delta", "output_index": 0, "item_id": "fc_up",
                        "delta": arguments[i:i + 7]} for i in range(0, len(arguments), 7)]
            done = dict(item, arguments=arguments)
            events += [{"type": "response.output_item.done", "output_index": 0, "item": done},
                       {"type": "response.completed", "response": {"id": "resp_up", "status": "completed", "output": [done],
                                                                  "usage": {"input_tokens": 20, "output_tokens": 9}}}]
        else:
            text = "5! is 120."
            events = [{"type": "response.output_item.added", "output_index": 0,
                       "item": {"type": "message", "id": "msg_up", "role": "assistant", "content": []}}]
            events += [{"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": text[i:i + 4]}
                       for i in range(0, len(text), 4)]
            events.append({"type": "response.completed", "response": {"id": "resp_up2", "status": "completed", "output": [
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}],
                "usage": {"input_tokens": 30, "output_tokens": 4}}})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in events:
            data = f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


class ResponsesUpstream(unittest.TestCase):
    def test_a_responses_upstream_gets_a_function_tool_and_the_history_with_store_false(self):
        model = ThreadingHTTPServer(("127.0.0.1", 0), ResponsesModel)
        model.daemon_threads = True
        threading.Thread(target=model.serve_forever, daemon=True).start()
        server = Server(f"http://127.0.0.1:{model.server_port}/v1", extra=["--upstream-api", "responses"])
        try:
            ResponsesModel.requests = []
            events = list(server.client().responses.create(model="gpt-test", input="What is 5!?", tools=CI, stream=True,
                                                           include=["code_interpreter_call.outputs"]))
            final = events[-1].response
            self.assertEqual(events[-1].type, "response.completed")
            self.assertEqual(final.output[0].type, "code_interpreter_call")
            self.assertEqual(final.output[0].outputs[0].logs, "120")
            self.assertEqual(final.output_text, "5! is 120.")
            self.assertEqual((final.usage.input_tokens, final.usage.output_tokens), (50, 13))
            self.assertGreater(len([e for e in events if e.type == "response.code_interpreter_call_code.delta"]), 1)
            first, second = ResponsesModel.requests
            self.assertIs(first["store"], False)
            self.assertEqual(first["tools"][0]["type"], "function")
            self.assertEqual(first["tools"][0]["name"], "execute_python")
            self.assertEqual(first["input"][0]["role"], "user")
            kinds = [i["type"] for i in second["input"]]
            self.assertEqual(kinds, ["message", "function_call", "function_call_output"])
            self.assertEqual(second["input"][1]["call_id"], second["input"][2]["call_id"])
            self.assertIn("120", second["input"][2]["output"][0]["text"])
        finally:
            server.stop()
            model.shutdown()
            model.server_close()


class ConversationsAcrossARestart(unittest.TestCase):
    def test_conversation_survives_a_restart(self):
        model = ThreadingHTTPServer(("127.0.0.1", 0), Model)
        model.daemon_threads = True
        threading.Thread(target=model.serve_forever, daemon=True).start()
        server = Server(f"http://127.0.0.1:{model.server_port}/v1")
        try:
            with Model.lock:
                Model.requests = []
                Model.script = [code_turn("memo = 'kept'\nmemo"), text_turn("Noted."), text_turn("You asked me to note something.")]
            client = server.client()
            conversation = client.conversations.create(metadata={"user": "u1"},
                                                       items=[{"type": "message", "role": "user", "content": "I am Ada."}])
            self.assertTrue(conversation.id.startswith("conv_"))
            first = client.responses.create(model="m", input="note this", tools=CI, conversation=conversation.id)
            self.assertEqual(first.conversation.id, conversation.id)
            before = [i.type for i in client.conversations.items.list(conversation.id, order="asc")]
            self.assertEqual(before, ["message", "message", "code_interpreter_call", "message"])

            server.stop()
            server.start()
            client = server.client()
            self.assertEqual(client.conversations.retrieve(conversation.id).metadata, {"user": "u1"})
            self.assertEqual(client.responses.retrieve(first.id).output_text, "Noted.")
            second = client.responses.create(model="m", input="what did I ask?", tools=CI, conversation=conversation.id)
            self.assertEqual(second.output_text, "You asked me to note something.")
            with Model.lock:
                messages = Model.requests[-1][1]["messages"]
            self.assertEqual(messages[0], {"role": "user", "content": "I am Ada."})
            self.assertEqual(messages[1], {"role": "user", "content": "note this"})
            self.assertIn("kept", [m for m in messages if m["role"] == "tool"][0]["content"])
            self.assertEqual(messages[-1], {"role": "user", "content": "what did I ask?"})
            after = list(client.conversations.items.list(conversation.id, order="asc"))
            self.assertEqual(len(after), 6)
            # Items can be added by hand, and the conversation deleted.
            added = client.conversations.items.create(conversation.id, items=[
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "PS"}]}])
            self.assertEqual(added.data[0].content[0].text, "PS")
            client.conversations.update(conversation.id, metadata={"user": "u2"})
            self.assertEqual(client.conversations.retrieve(conversation.id).metadata, {"user": "u2"})
            deleted = client.conversations.delete(conversation.id)
            self.assertTrue(deleted.deleted)
            with self.assertRaises(openai.NotFoundError):
                client.conversations.retrieve(conversation.id)
        finally:
            server.stop()
            model.shutdown()
            model.server_close()


if __name__ == "__main__":
    unittest.main()


class PerUserChatExampleAcrossARestart(unittest.TestCase):
    def test_each_user_continues_their_chain_and_container_after_a_restart(self):
        model = ThreadingHTTPServer(("127.0.0.1", 0), Model)
        model.daemon_threads = True
        threading.Thread(target=model.serve_forever, daemon=True).start()
        server = Server(f"http://127.0.0.1:{model.server_port}/v1")
        state = os.path.join(tempfile.mkdtemp(), "state.json")

        def chat(user, text):
            run = subprocess.run([sys.executable, os.path.join(ROOT, "examples/responses_per_user_chat.py"), user, text],
                                 capture_output=True, text=True, timeout=120,
                                 env=dict(os.environ, CODEINTERP_URL=server.url, CODEINTERP_API_KEY=KEY, STATE=state))
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
            return json.loads(run.stdout)

        try:
            with Model.lock:
                Model.requests = []
                Model.script = [code_turn("open('notes.txt', 'w').write('blue')"),
                                text_turn("Saved: [notes.txt](sandbox:/mnt/data/notes.txt)"),
                                code_turn("open('notes.txt').read()"), text_turn("Your note says blue."),
                                text_turn("Hello Bob.")]
            first = chat("alice", "remember blue")
            self.assertEqual(first["text"], "Saved: [notes.txt](sandbox:/mnt/data/notes.txt)")
            self.assertEqual([f["filename"] for f in first["files"]], ["notes.txt"])
            server.stop()
            server.start()
            second = chat("alice", "what was my note?")
            self.assertEqual(second["text"], "Your note says blue.")
            with Model.lock:
                bodies = [body for _, body in Model.requests]
            # After the restart the model still got alice's whole chain, and her container still had the file.
            self.assertEqual(bodies[2]["messages"][1], {"role": "user", "content": "remember blue"})
            self.assertIn("'blue'", [m for m in bodies[3]["messages"] if m["role"] == "tool"][-1]["content"])
            self.assertEqual(chat("bob", "hi")["text"], "Hello Bob.")
            with Model.lock:
                bob = Model.requests[-1][1]["messages"]
            self.assertEqual([m["role"] for m in bob], ["system", "user"], "bob's chain is his own")
            with open(state) as f:
                self.assertEqual(set(json.load(f)), {"alice", "bob"})
        finally:
            server.stop()
            model.shutdown()
            model.server_close()


class ExampleAgainstTheBundledDemoModel(unittest.TestCase):
    """examples/responses_code_interpreter.py against the suite's shared `codeinterp serve`, which has no upstream
    configured: the bundled scripted demo model answers, offline."""

    @unittest.skipUnless(os.environ.get("CODEINTERP_URL"), "needs the shared server (scripts/test starts it)")
    def test_example_streams_code_and_saves_the_cited_chart(self):
        out = tempfile.mkdtemp()
        run = subprocess.run([sys.executable, os.path.join(ROOT, "examples/responses_code_interpreter.py"),
                              "Chart the sales", "--out", out], capture_output=True, text=True, timeout=300,
                             env=dict(os.environ))
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        self.assertIn("--- code ---", run.stdout)
        self.assertIn("12 rows, total sales 1340", run.stdout)
        self.assertIn("[figure, ", run.stdout, "the open figure came back as an image output")
        self.assertIn("saved chart.png", run.stdout)
        with open(os.path.join(out, "chart.png"), "rb") as f:
            self.assertTrue(f.read().startswith(b"\x89PNG"))
        with open(os.path.join(out, "sales.csv")) as f:
            self.assertTrue(f.read().startswith("region,quarter,sales"))
