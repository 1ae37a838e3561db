"""The MCP tool flow every transport must pass (stdio: test_mcp_stdio.py, Streamable HTTP: test_mcp_http.py).

A test class mixes in ToolChecks and defines `run_client(body)` (runs `await body(client)` with a connected
`mcp.Client`) and `read_link(uri)` (the bytes behind a resource link, checking its form for that transport).
"""
import base64

CHART = """
import matplotlib.pyplot as plt
plt.plot([3, 1, 2])
plt.title("mcp")
plt.savefig("chart.png")
plt.show()
"""


class ToolChecks:
    def test_list_tools(self):
        async def body(client):
            return await client.list_tools()
        tools = self.run_client(body).tools
        self.assertEqual([t.name for t in tools], ["execute_python"])
        schema = tools[0].input_schema
        self.assertEqual(schema["type"], "object")
        self.assertEqual(schema["required"], ["code"])
        self.assertIn("/mnt/data", tools[0].description)
        self.assertIn("timeout_s", schema["properties"])
        self.assertIn("30 s wall time", tools[0].description)

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
        self.assertEqual(self.read_link(str(links[0].uri))[:4], b"\x89PNG")
        self.assertFalse(later.is_error)
        self.assertIn("42", later.content[0].text)

    def test_timeout_s_lowers_the_limit_and_unknown_arguments_are_refused(self):
        async def body(client):
            slow = await client.call_tool("execute_python", {"code": "import time\ntime.sleep(20)", "timeout_s": 1})
            typo = await client.call_tool("execute_python", {"code": "print('ran')", "timeout": 1})
            after = await client.call_tool("execute_python", {"code": "print('next')"})
            return slow, typo, after
        slow, typo, after = self.run_client(body)
        self.assertTrue(slow.is_error)
        self.assertIn("wall-clock limit of 1", slow.content[0].text)
        self.assertTrue(typo.is_error)
        self.assertIn("Unknown argument(s): timeout", typo.content[0].text)
        self.assertNotIn("ran", typo.content[0].text.replace("not run", ""))
        self.assertFalse(after.is_error)
        self.assertIn("next", after.content[0].text)

    def test_exception_is_an_error_result(self):
        async def body(client):
            return await client.call_tool("execute_python", {"code": "{}['missing']"})
        result = self.run_client(body)
        self.assertTrue(result.is_error)
        self.assertIn("KeyError", result.content[0].text)
        self.assertIn("missing", result.content[0].text)
