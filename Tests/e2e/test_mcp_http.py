"""End to end over Streamable HTTP with the official Python `mcp` client (2.x) against `codeinterp serve`'s /mcp:
what a remote MCP host does, with the API key in the Authorization header.

Needs CODEINTERP_URL and CODEINTERP_API_KEY (scripts/test starts the server).
"""
import asyncio
import base64
import os
import unittest
import urllib.request

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

URL = os.environ["CODEINTERP_URL"].rstrip("/")
KEY = os.environ["CODEINTERP_API_KEY"]

CHART = """
import matplotlib.pyplot as plt
plt.plot([3, 1, 2])
plt.title("mcp over http")
plt.savefig("chart.png")
plt.show()
"""


def run_client(body, key=KEY):
    async def main():
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
            async with Client(streamable_http_client(URL + "/mcp", http_client=http), mode="legacy") as client:
                return await body(client)
    return asyncio.run(main())


class McpOverStreamableHTTP(unittest.TestCase):
    def test_list_tools(self):
        async def body(client):
            return await client.list_tools()
        tools = run_client(body).tools
        self.assertEqual([t.name for t in tools], ["execute_python"])
        self.assertEqual(tools[0].input_schema["required"], ["code"])
        self.assertIn("/mnt/data", tools[0].description)

    def test_chart_comes_back_as_image_and_a_signed_link_and_state_persists(self):
        async def body(client):
            chart = await client.call_tool("execute_python", {"code": CHART + "\nanswer = 41"})
            later = await client.call_tool("execute_python", {"code": "answer + 1"})
            return chart, later
        chart, later = run_client(body)
        self.assertFalse(chart.is_error)
        images = [c for c in chart.content if c.type == "image"]
        self.assertEqual(len(images), 1)
        self.assertEqual(images[0].mime_type, "image/png")
        self.assertTrue(base64.b64decode(images[0].data).startswith(b"\x89PNG"))
        links = [c for c in chart.content if c.type == "resource_link"]
        self.assertEqual([l.name for l in links], ["chart.png"])
        uri = str(links[0].uri)
        self.assertTrue(uri.startswith(URL + "/v1/files/"), uri)
        # The link is signed: it downloads without the key.
        with urllib.request.urlopen(uri, timeout=30) as response:
            self.assertEqual(response.read(4), b"\x89PNG")
        self.assertFalse(later.is_error)
        self.assertIn("42", later.content[0].text)

    def test_exception_is_an_error_result(self):
        async def body(client):
            return await client.call_tool("execute_python", {"code": "{}['missing']"})
        result = run_client(body)
        self.assertTrue(result.is_error)
        self.assertIn("KeyError", result.content[0].text)
        self.assertIn("missing", result.content[0].text)

    def test_without_the_key_the_client_cannot_connect(self):
        async def body(client):
            return await client.list_tools()
        with self.assertRaises(BaseException):
            run_client(body, key="not-the-key")


if __name__ == "__main__":
    unittest.main()
