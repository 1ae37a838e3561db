"""End to end over stdio with the official Python `mcp` client (2.x) against `codeinterp mcp`: what an MCP host
(an IDE, a desktop assistant) does when it launches codeinterp as a tool server.

Env: CODEINTERP_BIN (default .build/debug/codeinterp); the data directory is a fresh temporary one.
Run inside the sandbox's outer namespaces like the other end-to-end tests.
"""
import asyncio
import os
import tempfile
import unittest

from mcp import Client, StdioServerParameters

from mcp_checks import ToolChecks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CODEINTERP_BIN", os.path.join(ROOT, ".build/debug/codeinterp"))

class McpOverStdio(ToolChecks, unittest.TestCase):
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

    def read_link(self, uri):
        # The link points at the stored file on this machine.
        self.assertTrue(uri.startswith("file://"), uri)
        with open(uri[len("file://"):], "rb") as f:
            return f.read()

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
