"""End to end over stdio with the official Python `mcp` client (2.x) against `codeinterp mcp`: what an MCP host
(an IDE, a desktop assistant) does when it launches codeinterp as a tool server.

Env: CODEINTERP_BIN (default .build/debug/codeinterp); the data directory is a fresh temporary one.
Run inside the sandbox's outer namespaces like the other end-to-end tests.
"""
import asyncio
import base64
import os
import tempfile
import unittest

from mcp import Client, StdioServerParameters

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CODEINTERP_BIN", os.path.join(ROOT, ".build/debug/codeinterp"))

CHART = """
import matplotlib.pyplot as plt
plt.plot([3, 1, 2])
plt.title("mcp")
plt.savefig("chart.png")
plt.show()
"""


class McpOverStdio(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data = tempfile.TemporaryDirectory(prefix="codeinterp-mcp-")

    @classmethod
    def tearDownClass(cls):
        cls.data.cleanup()

    def params(self):
        env = dict(os.environ)
        env["CODEINTERP_DATA_DIR"] = self.data.name
        env.setdefault("CODEINTERP_PROFILES_DIR", os.path.join(ROOT, "sandbox-profiles"))
        env.setdefault("CODEINTERP_PRELOAD", "numpy,pandas,matplotlib.pyplot")
        return StdioServerParameters(command=BIN, args=["mcp"], env=env)

    def run_client(self, body):
        async def main():
            async with Client(self.params(), mode="legacy") as client:
                return await body(client)
        return asyncio.run(main())

    def test_list_tools(self):
        async def body(client):
            return await client.list_tools()
        tools = self.run_client(body).tools
        self.assertEqual([t.name for t in tools], ["execute_python"])
        schema = tools[0].input_schema
        self.assertEqual(schema["type"], "object")
        self.assertEqual(schema["required"], ["code"])
        self.assertIn("/mnt/data", tools[0].description)

    def test_chart_comes_back_as_image_and_file_link_and_state_persists(self):
        async def body(client):
            chart = await client.call_tool("execute_python", {"code": CHART + "\nanswer = 41"})
            later = await client.call_tool("execute_python", {"code": "answer + 1"})
            return chart, later
        chart, later = self.run_client(body)
        self.assertFalse(chart.is_error)
        images = [c for c in chart.content if c.type == "image"]
        self.assertEqual(len(images), 1)
        self.assertEqual(images[0].mime_type, "image/png")
        self.assertTrue(base64.b64decode(images[0].data).startswith(b"\x89PNG"))
        links = [c for c in chart.content if c.type == "resource_link"]
        self.assertEqual([l.name for l in links], ["chart.png"])
        self.assertEqual(links[0].mime_type, "image/png")
        self.assertTrue(str(links[0].uri).startswith("file://"))
        # The link points at the stored PNG on this machine.
        with open(str(links[0].uri)[len("file://"):], "rb") as f:
            self.assertEqual(f.read(4), b"\x89PNG")
        self.assertFalse(later.is_error)
        self.assertIn("42", later.content[0].text)

    def test_exception_is_an_error_result(self):
        async def body(client):
            return await client.call_tool("execute_python", {"code": "{}['missing']"})
        result = self.run_client(body)
        self.assertTrue(result.is_error)
        self.assertIn("KeyError", result.content[0].text)
        self.assertIn("missing", result.content[0].text)

    def test_unknown_tool_is_a_protocol_error(self):
        async def body(client):
            try:
                await client.call_tool("shell", {"cmd": "ls"})
            except Exception as error:  # the client raises for a JSON-RPC error
                return error
            return None
        error = self.run_client(body)
        self.assertIsNotNone(error, "calling an unknown tool must fail with a JSON-RPC error")
        self.assertIn("shell", str(error))


if __name__ == "__main__":
    unittest.main()
