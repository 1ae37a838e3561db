"""A chat backend's migration from the Assistants API (threads, runs) to the Responses API, the way a Flask chat
keeps state: one line per user, the id of that user's last response. Each message continues the chain with
previous_response_id; codeinterp keeps the rest (the history, and the user's container with its variables and
files), in its database, across its own restarts.

The part a web framework would call is `reply(user, text)`; a Flask route is three lines around it:
    @app.post("/chat")
    def chat(): return jsonify(reply(session["user"], request.json["message"]))

Env: CODEINTERP_URL (default http://127.0.0.1:8080), CODEINTERP_API_KEY, MODEL (default o4-mini),
STATE (default ./chat-state.json: user -> last response id). Usage:
  python examples/responses_per_user_chat.py alice "Load the sales and chart them"
  python examples/responses_per_user_chat.py alice "Which region grew fastest?"     # same chain, same container
"""
import json
import os
import sys

import openai
from openai import OpenAI

client = OpenAI(base_url=os.environ.get("CODEINTERP_URL", "http://127.0.0.1:8080").rstrip("/") + "/v1",
                api_key=os.environ["CODEINTERP_API_KEY"])
MODEL = os.environ.get("MODEL", "o4-mini")
STATE = os.environ.get("STATE", "chat-state.json")
INSTRUCTIONS = "You are a data assistant. Use the Python tool for any computation; link files you make."


def load_state():
    try:
        with open(STATE) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def save_state(state):
    tmp = STATE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, STATE)


def reply(user, text):
    """One user message -> {"text", "files": [{"filename", "container_id", "file_id"}], "response_id"}."""
    state = load_state()
    request = dict(model=MODEL, instructions=INSTRUCTIONS, input=text, store=True,
                   tools=[{"type": "code_interpreter", "container": {"type": "auto"}}])
    try:
        response = client.responses.create(previous_response_id=state.get(user), **request)
    except openai.BadRequestError as error:
        if error.code != "previous_response_not_found":
            raise
        # The stored chain is gone (deleted, or another server): start the user over instead of failing.
        response = client.responses.create(**request)
    state[user] = response.id
    save_state(state)
    files = [{"filename": a.filename, "container_id": a.container_id, "file_id": a.file_id}
             for item in response.output if item.type == "message"
             for part in item.content for a in (getattr(part, "annotations", None) or [])
             if a.type == "container_file_citation"]
    return {"text": response.output_text, "files": files, "response_id": response.id}


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    print(json.dumps(reply(sys.argv[1], " ".join(sys.argv[2:])), indent=2))
