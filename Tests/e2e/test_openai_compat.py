"""End to end over real HTTP against a running `codeinterp serve`, with the official `openai` package as the
client: what a chat backend that used OpenAI's containers does after changing only its base URL.

Needs CODEINTERP_URL (http://127.0.0.1:PORT) and CODEINTERP_API_KEY; scripts/test starts the server.
"""
import json
import os
import unittest
import urllib.error
import urllib.request

import openai

URL = os.environ["CODEINTERP_URL"].rstrip("/")
KEY = os.environ["CODEINTERP_API_KEY"]

CHART = """
import pandas as pd
import matplotlib.pyplot as plt
df = pd.read_csv('sales.csv')
df.plot.bar(x='region', y='sales')
plt.savefig('/mnt/data/chart.png')
print(int(df.sales.sum()))
"""


def http(method, path, body=None, headers=None, key=KEY):
    """(status, headers, bytes) of one request; never raises for HTTP errors."""
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    request = urllib.request.Request(URL + path, data=data, method=method)
    if isinstance(body, (dict, list)):
        request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def execute(code, **fields):
    status, _, body = http("POST", "/v1/execute", {"code": code, **fields})
    assert status == 200, (status, body)
    return json.loads(body)


class ContainersThroughTheOpenAIClient(unittest.TestCase):
    def setUp(self):
        self.client = openai.OpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0)

    def test_upload_analyse_download_delete(self):
        container = self.client.containers.create(name="e2e-sales")
        self.assertEqual(container.object, "container")
        self.assertEqual(container.name, "e2e-sales")
        self.assertEqual(container.status, "running")

        upload = self.client.containers.files.create(
            container.id, file=("sales.csv", b"region,sales\nnorth,10\nsouth,32\n", "text/csv"))
        self.assertEqual(upload.object, "container.file")
        self.assertEqual(upload.path, "/mnt/data/sales.csv")
        self.assertEqual(upload.source, "user")
        self.assertEqual(upload.container_id, container.id)

        # The code runs through the native API, in the container's session.
        result = execute(CHART, session_id=container.id)
        self.assertEqual(result["status"], "ok", result)
        self.assertEqual(result["stdout"], "42\n")
        self.assertIn("/mnt/data/chart.png", [f["path"] for f in result["files"]])

        files = list(self.client.containers.files.list(container.id))
        by_path = {f.path: f for f in files}
        self.assertEqual(set(by_path), {"/mnt/data/sales.csv", "/mnt/data/chart.png"})
        chart = by_path["/mnt/data/chart.png"]
        self.assertEqual(chart.source, "assistant")
        self.assertEqual(self.client.containers.files.retrieve(chart.id, container_id=container.id).path,
                         "/mnt/data/chart.png")
        png = self.client.containers.files.content.retrieve(chart.id, container_id=container.id).read()
        self.assertTrue(png.startswith(b"\x89PNG\r\n\x1a\n"))
        self.assertEqual(len(png), chart.bytes)

        self.assertEqual(self.client.containers.retrieve(container.id).id, container.id)
        self.client.containers.delete(container.id)
        with self.assertRaises(openai.NotFoundError):
            self.client.containers.retrieve(container.id)
        with self.assertRaises(openai.NotFoundError):
            self.client.containers.files.content.retrieve(chart.id, container_id=container.id)

    def test_memory_limit_is_the_containers_memory(self):
        small = self.client.containers.create(name="e2e-1g", memory_limit="1g")
        large = self.client.containers.create(name="e2e-4g", memory_limit="4g")
        try:
            self.assertEqual(small.memory_limit, "1g")
            self.assertEqual(large.memory_limit, "4g")
            self.assertEqual(self.client.containers.retrieve(large.id).memory_limit, "4g")
            grab = "block = bytearray(1536 * 1024 * 1024)\nlen(block) >> 20"
            self.assertEqual(execute(grab, session_id=small.id)["status"], "memory_limit")
            result = execute(grab, session_id=large.id)
            self.assertEqual(result["status"], "ok", result)
            self.assertEqual(result["result"]["text/plain"], "1536")
            with self.assertRaises(openai.BadRequestError) as raised:
                self.client.containers.create(name="e2e-64g", memory_limit="64g")
            self.assertIn("maximum", str(raised.exception))
        finally:
            self.client.containers.delete(small.id)
            self.client.containers.delete(large.id)

    def test_a_file_is_attached_by_id(self):
        first = self.client.containers.create(name="e2e-source")
        second = self.client.containers.create(name="e2e-target")
        try:
            original = self.client.containers.files.create(first.id, file=("notes.txt", b"hello"))
            copy = self.client.containers.files.create(second.id, file_id=original.id)
            self.assertEqual(copy.path, "/mnt/data/notes.txt")
            self.assertEqual(execute("open('notes.txt').read()", session_id=second.id)["result"]["text/plain"],
                             "'hello'")
        finally:
            self.client.containers.delete(first.id)
            self.client.containers.delete(second.id)

    def test_listing_pages_through_every_container(self):
        made = [self.client.containers.create(name=f"e2e-page-{i}") for i in range(3)]
        try:
            seen = [c.id for c in self.client.containers.list(limit=1, order="asc")]
            for container in made:
                self.assertIn(container.id, seen)
            self.assertEqual(len(seen), len(set(seen)), "a page repeated a container")
            page = self.client.containers.list(limit=2, order="desc")
            self.assertEqual(len(page.data), 2)
            self.assertTrue(page.has_more)
        finally:
            for container in made:
                self.client.containers.delete(container.id)

    def test_errors_become_the_sdks_exceptions(self):
        with self.assertRaises(openai.NotFoundError):
            self.client.containers.retrieve("00000000-0000-0000-0000-000000000000")
        with self.assertRaises(openai.NotFoundError):
            self.client.containers.files.list("no-such-container")
        bad = openai.OpenAI(base_url=URL + "/v1", api_key="wrong-key", max_retries=0)
        with self.assertRaises(openai.AuthenticationError):
            bad.containers.list()
        with self.assertRaises(openai.BadRequestError) as raised:
            self.client.containers.create(name="e2e-bad", expires_after={"anchor": "last_active_at", "minutes": -5})
        self.assertIsInstance(raised.exception.body, dict)
        container = self.client.containers.create(name="e2e-bad-name")
        try:
            with self.assertRaises(openai.BadRequestError):
                self.client.containers.files.create(container.id, file=("..", b"x"))
        finally:
            self.client.containers.delete(container.id)

    def test_upload_names_as_the_readme_says(self):
        container = self.client.containers.create(name="e2e-names")
        try:
            # httpx sends an empty name as no filename at all: refused, not saved as "upload".
            with self.assertRaises(openai.BadRequestError) as raised:
                self.client.containers.files.create(container.id, file=("", b"x"))
            self.assertEqual(raised.exception.code, "invalid_file_name")
            self.assertIn("no file name", raised.exception.message)
            # Control characters are escaped by the client (the HTML form encoding), so the server receives, and
            # keeps, the escaped text.
            escaped = self.client.containers.files.create(container.id, file=("ok\x01.txt", b"x"))
            self.assertEqual(escaped.path, "/mnt/data/ok%01.txt")
            self.assertEqual([f.path for f in self.client.containers.files.list(container.id)], ["/mnt/data/ok%01.txt"])
        finally:
            self.client.containers.delete(container.id)


class NativeAPI(unittest.TestCase):
    def test_stateless_execution_returns_a_downloadable_chart(self):
        result = execute("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.savefig('/mnt/data/line.png')\n6 * 7")
        self.assertEqual(result["status"], "ok", result)
        self.assertEqual(result["result"]["text/plain"], "42")
        chart = next(f for f in result["files"] if f["name"] == "line.png")
        # The signed URL works without the key (what an <img src> in a chat UI does).
        status, headers, body = http("GET", chart["url"][len(URL):], key=None)
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "image/png")
        self.assertTrue(body.startswith(b"\x89PNG"))

    def test_requests_without_a_key_are_refused(self):
        status, _, body = http("POST", "/v1/execute", {"code": "1"}, key=None)
        self.assertEqual(status, 401)
        error = json.loads(body)["error"]
        self.assertEqual(set(error), {"message", "type", "param", "code"})
        self.assertEqual(http("GET", "/healthz", key=None)[0], 200)

    def test_server_sent_events_arrive_in_order(self):
        request = urllib.request.Request(
            URL + "/v1/execute", method="POST",
            data=json.dumps({"code": "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.05)\n'done'"}).encode(),
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json",
                     "Accept": "text/event-stream"})
        events = []
        with urllib.request.urlopen(request, timeout=60) as response:
            self.assertTrue(response.headers["Content-Type"].startswith("text/event-stream"))
            event, data = None, []
            for raw in response:
                line = raw.decode().rstrip("\n")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and event:
                    events.append((event, json.loads("\n".join(data))))
                    event, data = None, []
        kinds = [kind for kind, _ in events]
        self.assertEqual(kinds[-1], "result")
        printed = [d["text"] for k, d in events if k == "stdout"]
        self.assertEqual("".join(printed), "0\n1\n2\n")
        # A line per event (print writes the number and the newline separately), never a line in pieces.
        self.assertLessEqual(len(printed), 3, printed)
        self.assertTrue(all(text.endswith("\n") for text in printed), printed)
        self.assertLess(kinds.index("stdout"), kinds.index("result"))
        self.assertEqual(events[-1][1]["result"]["text/plain"], "'done'")

    def test_bad_requests_get_clear_errors(self):
        for body, expected in [(b"{not json", 400), ({"code": 42}, 400), ({}, 400),
                               ({"code": "x" * (2 << 20)}, 413)]:
            status, _, payload = http("POST", "/v1/execute", body,
                                      headers={"Content-Type": "application/json"})
            self.assertEqual(status, expected, (body if len(str(body)) < 80 else "big", payload[:200]))
            self.assertIn("message", json.loads(payload)["error"])
        self.assertEqual(http("GET", "/v1/files/00000000-0000-0000-0000-000000000000")[0], 404)
        self.assertEqual(http("POST", "/v1/execute", {"code": "1", "session_id": "nope"})[0], 404)
        # And the service is still serving.
        self.assertEqual(execute("1 + 1")["result"]["text/plain"], "2")


if __name__ == "__main__":
    unittest.main()
