"""A chat backend's tool loop with codeinterp as the `execute_python` tool (OpenAI Chat Completions).

The model runs wherever OPENAI_BASE_URL points (OpenAI, vLLM, Ollama, LiteLLM...); codeinterp only runs the code:
  1. GET  /v1/tools?format=openai-chat     -> the tool definition to pass in `tools`
  2. POST /v1/tools/call                   -> each tool call the model makes, answered with the `tool` message
                                              to append (same conversation_id: one sandbox session per chat)
  3. POST /v1/links/resolve                -> sandbox:/mnt/data/... links in the final answer become download URLs

Env: CODEINTERP_URL (default http://127.0.0.1:8080), CODEINTERP_API_KEY, OPENAI_BASE_URL, OPENAI_API_KEY,
MODEL (default gpt-4.1-mini). Usage: python examples/python_tool_loop.py "Plot y = x^2 and give me the PNG"
"""
import json
import os
import sys
import urllib.request
import uuid

from openai import OpenAI

CODEINTERP_URL = os.environ.get("CODEINTERP_URL", "http://127.0.0.1:8080").rstrip("/")
CODEINTERP_KEY = os.environ["CODEINTERP_API_KEY"]
MODEL = os.environ.get("MODEL", "gpt-4.1-mini")


def codeinterp(method, path, body=None):
    """One JSON request to codeinterp (the API key stays on the server side)."""
    request = urllib.request.Request(CODEINTERP_URL + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {CODEINTERP_KEY}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.load(response)


def chat(user_message, conversation_id=None, max_turns=8):
    """Runs the loop until the model answers without tool calls; returns (text, annotations)."""
    conversation_id = conversation_id or f"conv-{uuid.uuid4()}"
    client = OpenAI()  # OPENAI_BASE_URL / OPENAI_API_KEY from the environment
    tool = codeinterp("GET", "/v1/tools?format=openai-chat")
    messages = [
        {"role": "system", "content": "You can run Python with execute_python. Link files you make as "
                                      "[name](sandbox:/mnt/data/name)."},
        {"role": "user", "content": user_message},
    ]
    for _ in range(max_turns):
        reply = client.chat.completions.create(model=MODEL, messages=messages, tools=[tool])
        message = reply.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            resolved = codeinterp("POST", "/v1/links/resolve",
                                  {"text": message.content or "", "conversation_id": conversation_id})
            return resolved["text"], resolved["annotations"]
        for call in message.tool_calls:
            # The call goes as it came; the answer is the `tool` message to append.
            result = codeinterp("POST", "/v1/tools/call",
                                {"call": call.model_dump(), "conversation_id": conversation_id})
            messages.append(result)
    raise RuntimeError(f"no final answer after {max_turns} model turns")


if __name__ == "__main__":
    text, annotations = chat(" ".join(sys.argv[1:]) or "Plot a sine wave, save it as chart.png and link it.")
    print(text)
    for a in annotations:
        print(f"  {a['filename']}: {a['url']}")
