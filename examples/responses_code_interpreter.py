"""OpenAI's Responses API with the hosted code_interpreter tool, served by codeinterp: the code a backend already has
for OpenAI, with only the base URL changed. The model is whatever codeinterp's upstream is (OpenAI, a local
Chat Completions server, or the bundled scripted demo when none is configured, so this runs offline).

What it shows, end to end:
  1. a streamed turn: the code as the model writes it, its logs and figures (include=["code_interpreter_call.outputs"]),
     then the answer as it streams;
  2. the files the answer links (container_file_citation annotations) downloaded through the containers API;
  3. the next turn continued with previous_response_id: same container, so variables and files are still there.

Env: CODEINTERP_URL (default http://127.0.0.1:8080), CODEINTERP_API_KEY, MODEL (default o4-mini; codeinterp sends it
upstream unless upstream_model is configured). Usage:
  python examples/responses_code_interpreter.py "Chart quarterly sales per region" [--out DIR]
"""
import base64
import os
import sys

from openai import OpenAI

client = OpenAI(base_url=os.environ.get("CODEINTERP_URL", "http://127.0.0.1:8080").rstrip("/") + "/v1",
                api_key=os.environ["CODEINTERP_API_KEY"])
MODEL = os.environ.get("MODEL", "o4-mini")
TOOLS = [{"type": "code_interpreter", "container": {"type": "auto"}}]


def turn(question, previous_response_id=None, out="."):
    """One streamed turn; returns the final response."""
    stream = client.responses.create(model=MODEL, input=[{"role": "user", "content": question}], tools=TOOLS,
                                     include=["code_interpreter_call.outputs"], stream=True, store=True,
                                     previous_response_id=previous_response_id)
    final = None
    for event in stream:
        if event.type == "response.code_interpreter_call.in_progress":
            print("\n--- code ---")
        elif event.type == "response.code_interpreter_call_code.delta":
            print(event.delta, end="", flush=True)
        elif event.type == "response.output_item.done" and event.item.type == "code_interpreter_call":
            print("\n--- output ---")
            for output in event.item.outputs or []:
                if output.type == "logs":
                    print(output.logs)
                elif output.type == "image":
                    data = base64.b64decode(output.url.split(",", 1)[1])
                    print(f"[figure, {len(data)} bytes]")
        elif event.type == "response.output_text.delta":
            print(event.delta, end="", flush=True)
        elif event.type in ("response.completed", "response.failed", "response.incomplete"):
            final = event.response
    print()
    if final is None or final.status != "completed":
        raise SystemExit(f"the response did not complete: {final.error if final else 'no final event'}")

    # Files the answer links: each citation names its container and file; download them like OpenAI's.
    for item in final.output:
        if item.type != "message":
            continue
        for part in item.content:
            for citation in getattr(part, "annotations", []) or []:
                if citation.type != "container_file_citation":
                    continue
                content = client.containers.files.content.retrieve(citation.file_id, container_id=citation.container_id)
                path = os.path.join(out, citation.filename)
                with open(path, "wb") as f:
                    f.write(content.read())
                print(f"saved {citation.filename} -> {path}")
    return final


def main():
    args = sys.argv[1:]
    out = "."
    if "--out" in args:
        i = args.index("--out")
        out = args[i + 1]
        del args[i:i + 2]
        os.makedirs(out, exist_ok=True)
    question = " ".join(args) or "Chart quarterly sales per region and tell me who grew fastest."
    first = turn(question, out=out)
    # The next turn continues the chain: the same container, so `df` and the files of the first turn are there.
    turn("Now list the files you made.", previous_response_id=first.id, out=out)


if __name__ == "__main__":
    main()
