#!/usr/bin/env bash
# codeinterp over plain HTTP: execute, stream, a session with an upload, a download, a model's tool call.
# Env: CODEINTERP_URL (default http://127.0.0.1:8080), CODEINTERP_API_KEY. Needs curl and python3 (to read JSON).
set -euo pipefail
URL="${CODEINTERP_URL:-http://127.0.0.1:8080}"
AUTH=(-H "Authorization: Bearer $CODEINTERP_API_KEY")
JSON=(-H "Content-Type: application/json")
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

echo "== execute: the value of the last expression comes back in result[\"text/plain\"]"
curl -fsS "$URL/v1/execute" "${AUTH[@]}" "${JSON[@]}" -d '{"code": "import numpy as np\nnp.arange(5).sum()"}' \
  | field 'd["status"], d["result"]["text/plain"]'

echo "== stream: Server-Sent Events (stdout as printed, then result)"
curl -fsSN "$URL/v1/execute?stream=true" "${AUTH[@]}" "${JSON[@]}" \
  -d '{"code": "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)"}' | grep '^event:' | sort | uniq -c

echo "== a session with an upload: state and files persist between executions"
SESSION=$(curl -fsS "$URL/v1/sessions" "${AUTH[@]}" "${JSON[@]}" -d '{"name": "curl demo"}' | field 'd["id"]')
printf 'region,sales\nNorth,120\nSouth,90\n' > "$TMP/sales.csv"
curl -fsS "$URL/v1/sessions/$SESSION/files" "${AUTH[@]}" -F "file=@$TMP/sales.csv" | field 'd["path"]'
RESULT=$(curl -fsS "$URL/v1/execute" "${AUTH[@]}" "${JSON[@]}" -d "{\"session_id\": \"$SESSION\", \"code\":
  \"import pandas as pd\\ndf = pd.read_csv('sales.csv')\\ndf.plot.bar(x='region', y='sales').figure.savefig('chart.png')\\nint(df.sales.sum())\"}")
echo "$RESULT" | field 'd["result"]["text/plain"]'

echo "== download: the signed url works without the key (e.g. in <img src>)"
CHART_URL=$(echo "$RESULT" | field '[f["url"] for f in d["files"] if f["name"] == "chart.png"][0]')
curl -fsS "$CHART_URL" -o "$TMP/chart.png"
python3 -c 'import sys; print("chart.png is a PNG" if open(sys.argv[1], "rb").read(8) == b"\x89PNG\r\n\x1a\n" else "not a PNG")' "$TMP/chart.png"
curl -fsS -X DELETE "$URL/v1/sessions/$SESSION" "${AUTH[@]}" >/dev/null

echo "== a model's tool call, as it came from Chat Completions; the answer is the tool message to append"
curl -fsS "$URL/v1/tools?format=openai-chat" "${AUTH[@]}" | field 'd["function"]["name"]'
curl -fsS "$URL/v1/tools/call" "${AUTH[@]}" "${JSON[@]}" -d '{
  "conversation_id": "curl-demo",
  "call": {"id": "call_1", "type": "function",
           "function": {"name": "execute_python", "arguments": "{\"code\": \"open(\\\"hi.txt\\\", \\\"w\\\").write(\\\"hi\\\")\"}"}}
}' | field 'd["content"]'
curl -fsS "$URL/v1/links/resolve" "${AUTH[@]}" "${JSON[@]}" \
  -d '{"conversation_id": "curl-demo", "text": "Download [hi.txt](sandbox:/mnt/data/hi.txt)."}' | field 'd["text"]'
