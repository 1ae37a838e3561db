"""A chat backend's tool loop with codeinterp as the `execute_python` tool (OpenAI Chat Completions).

The model runs wherever OPENAI_BASE_URL points (OpenAI, vLLM, Ollama, LiteLLM...); codeinterp only runs the code:
  1. GET  /v1/tools?format=openai-chat     -> the tool definition to pass in `tools`
  2. POST /v1/tools/call                   -> each tool call the model makes, answered with the `tool` message
                                              to append (same conversation_id: one sandbox session per chat)
  3. POST /v1/links/resolve                -> sandbox:/mnt/data/... links in the final answer become download URLs

Without OPENAI_API_KEY the model is scripted: the assistant turns of examples/scripted-demo.json (the script that
`codeinterp chat --script` replays) answer through the same `openai` client, served in-process, so the loop runs
offline with nothing but codeinterp. It writes a sales CSV, summarises it, charts it and links both files.

Env: CODEINTERP_URL (default http://127.0.0.1:8080), CODEINTERP_API_KEY (printed by ./scripts/serve),
OPENAI_API_KEY, OPENAI_BASE_URL, MODEL (default gpt-4.1-mini).
Usage: python examples/python_tool_loop.py "Plot y = x^2 and give me the PNG"
"""
import json
import os
import sys
import urllib.error
import urllib.request
import uuid

import httpx
from openai import OpenAI, OpenAIError

CODEINTERP_URL = os.environ.get("CODEINTERP_URL", "http://127.0.0.1:8080").rstrip("/")
MODEL = os.environ.get("MODEL", "gpt-4.1-mini")
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripted-demo.json")


def codeinterp(method, path, body=None):
    """One JSON request to codeinterp (the API key stays on the server side)."""
    request = urllib.request.Request(CODEINTERP_URL + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {os.environ.get('CODEINTERP_API_KEY', '')}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.load(response)


def chat(user_message, conversation_id=None, max_turns=8, client=None):
    """Runs the loop until the model answers without tool calls; returns (text, annotations)."""
    conversation_id = conversation_id or f"conv-{uuid.uuid4()}"
    client = client or OpenAI()  # OPENAI_BASE_URL / OPENAI_API_KEY from the environment
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


def scripted_client(path=SCRIPT):
    """An `openai` client whose model is a script: each Chat Completions request is answered, in-process (an httpx
    transport, no network), with the script's next assistant turn."""
    with open(path) as f:
        turns = iter(json.load(f)["turns"])

    def complete(request):
        body = json.loads(request.content)
        turn = next(turns, {"content": "(the script has no more turns)"})
        calls = [{"id": call.get("id", f"call_{i}"), "type": "function",
                  "function": {"name": call["name"], "arguments": call["arguments"] if isinstance(call["arguments"], str)
                               else json.dumps(call["arguments"])}}
                 for i, call in enumerate(turn.get("tool_calls", []))]
        message = {"role": "assistant", "content": turn.get("content"), **({"tool_calls": calls} if calls else {})}
        return httpx.Response(200, json={
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
        })

    return OpenAI(api_key="scripted", base_url="http://scripted-model.invalid/v1",
                  http_client=httpx.Client(transport=httpx.MockTransport(complete)))


def main():
    if not os.environ.get("CODEINTERP_API_KEY"):
        sys.exit("CODEINTERP_API_KEY is not set: set it to codeinterp's API key "
                 "(./scripts/serve prints it; `codeinterp serve` keeps it in DATA/api-key).")
    question = " ".join(sys.argv[1:])
    if os.environ.get("OPENAI_API_KEY"):
        client = OpenAI()
        question = question or "Plot a sine wave, save it as chart.png and link it."
        print(f"[model: {MODEL} at {client.base_url}]", file=sys.stderr)
    else:
        client = scripted_client()
        question = question or "Summarise the sales and draw a chart."
        print(f"[OPENAI_API_KEY is not set: the model is scripted ({os.path.relpath(SCRIPT)}), offline; it answers "
              "its own demo whatever the question. Set OPENAI_API_KEY (and OPENAI_BASE_URL) for a real model.]",
              file=sys.stderr)
    try:
        text, annotations = chat(question, client=client)
    except urllib.error.HTTPError as e:
        sys.exit(f"codeinterp at {CODEINTERP_URL} answered {e.code}: {e.read().decode(errors='replace')}")
    except urllib.error.URLError as e:
        sys.exit(f"cannot reach codeinterp at {CODEINTERP_URL} ({e.reason}); start it with ./scripts/serve")
    except OpenAIError as e:
        sys.exit(f"the model at {client.base_url} failed: {e}")
    print(text)
    for a in annotations:
        print(f"  {a['filename']}: {a['url']}")


if __name__ == "__main__":
    main()
