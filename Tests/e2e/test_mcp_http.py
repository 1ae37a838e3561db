"""End to end over Streamable HTTP with the official Python `mcp` client (2.x) against `codeinterp serve`'s /mcp:
what a remote MCP host does, with the API key in the Authorization header.

Needs CODEINTERP_URL and CODEINTERP_API_KEY (scripts/test starts the server).
"""
import asyncio
import os
import unittest
import urllib.request

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_checks import ToolChecks

URL = os.environ["CODEINTERP_URL"].rstrip("/")
KEY = os.environ["CODEINTERP_API_KEY"]


def run_client(body, key=KEY):
    async def main():
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
            async with Client(streamable_http_client(URL + "/mcp", http_client=http), mode="legacy") as client:
                return await body(client)
    return asyncio.run(main())


class McpOverStreamableHTTP(ToolChecks, unittest.TestCase):
    def run_client(self, body):
        return run_client(body)

    def read_link(self, uri):
        self.assertTrue(uri.startswith(URL + "/v1/files/"), uri)
        # The link is signed: it downloads without the key.
        with urllib.request.urlopen(uri, timeout=30) as response:
            return response.read()

    def test_without_the_key_the_client_cannot_connect(self):
        async def body(client):
            return await client.list_tools()
        with self.assertRaises(BaseException):
            run_client(body, key="not-the-key")


if __name__ == "__main__":
    unittest.main()
