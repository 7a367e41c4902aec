"""MCP over plain HTTP with the standard library, for what an SDK hides or cannot do.

The judges use it to send exact headers (a wrong bearer, a foreign Origin), to
read raw status codes and JSON-RPC error codes, and, from the shell kit
(conformance/flows/kit.sh), to wait until the hub lists a deployment's tools.
No `mcp` package needed, so the system python3 runs it.

    python3 raw_mcp.py status URL [--bearer-file F] [-H 'Name: value']...
        prints the HTTP status of an `initialize` POST
    python3 raw_mcp.py wait-tools URL --bearer-file F [--timeout S] TOOL...
        exits 0 once tools/list holds every TOOL, 1 after S seconds (default 30)
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
import urllib.parse
from typing import Any

# The protocol revision the raw requests speak: the newest with `initialize`.
PROTOCOL_VERSION = "2025-11-25"
TIMEOUT_S = 10


def initialize_message(client: str = "ewii-raw-mcp") -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": client, "version": "0"},
        },
    }


def post(url: str, message: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    """POST one JSON-RPC message: (status, lower-cased response headers, body)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT_S)
    try:
        conn.request(
            "POST",
            parts.path,
            body=json.dumps(message),
            headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers},
        )
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode(errors="replace")
    finally:
        conn.close()


def json_rpc_reply(body: str, request_id: int) -> dict[str, Any]:
    """The JSON-RPC response to `request_id` in a JSON or text/event-stream body."""
    candidates = [body] if body.lstrip().startswith("{") else []
    for event in body.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[5:].lstrip() for line in event.split("\n") if line.startswith("data:"))
        if data:
            candidates.append(data)
    for text in candidates:
        message = json.loads(text)
        if message.get("id") == request_id:
            return message
    raise ValueError(f"no JSON-RPC response with id {request_id} in {body[:500]!r}")


def request(url: str, headers: dict[str, str], method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """`method` in a fresh session (initialize, initialized, then the request): the JSON-RPC reply."""
    status, reply_headers, body = post(url, initialize_message(), headers)
    if status != 200:
        raise RuntimeError(f"initialize: HTTP {status}: {body[:500]}")
    session = {"Mcp-Session-Id": reply_headers["mcp-session-id"], "MCP-Protocol-Version": PROTOCOL_VERSION}
    post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, {**headers, **session})
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": 2, "method": method}
    if params is not None:
        message["params"] = params
    status, _, body = post(url, message, {**headers, **session})
    if status != 200:
        raise RuntimeError(f"{method}: HTTP {status}: {body[:500]}")
    return json_rpc_reply(body, 2)


def bearer(path: str | None) -> dict[str, str]:
    if path is None:
        return {}
    with open(path) as f:
        return {"Authorization": f"Bearer {f.readline().strip()}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status")
    status.add_argument("url")
    status.add_argument("--bearer-file")
    status.add_argument("-H", "--header", action="append", default=[])
    wait = commands.add_parser("wait-tools")
    wait.add_argument("url")
    wait.add_argument("--bearer-file", required=True)
    wait.add_argument("--timeout", type=float, default=30)
    wait.add_argument("tools", nargs="+")
    args = parser.parse_args()

    headers = bearer(args.bearer_file)
    if args.command == "status":
        for header in args.header:
            name, _, value = header.partition(":")
            headers[name.strip()] = value.strip()
        print(post(args.url, initialize_message(), headers)[0])
        return 0

    deadline = time.monotonic() + args.timeout
    listed: set[str] = set()
    last_error = ""
    while time.monotonic() < deadline:
        try:
            reply = request(args.url, headers, "tools/list")
            listed = {tool["name"] for tool in reply.get("result", {}).get("tools", [])}
            if set(args.tools) <= listed:
                return 0
        except (OSError, RuntimeError, ValueError) as e:
            last_error = str(e)
        time.sleep(0.3)
    print(f"tools/list at {args.url} lacks {sorted(set(args.tools) - listed)} after {args.timeout}s "
          f"(listed: {sorted(listed)}) {last_error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
