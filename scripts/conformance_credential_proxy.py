"""A credential-adding proxy for the MCP conformance run, and nothing else.

`ewii-adapter serve` answers only callers presenting its local credential
(`Authorization: Bearer ...`), as the Ewii client does. The official conformance
suite (@modelcontextprotocol/conformance 0.1.x) has no option to send a header,
so scripts/mcp-conformance.sh points it at this proxy on loopback, which forwards
each request unchanged to the adapter except that it sets the Authorization
header (replacing any the caller sent) and asks for one request per connection.
Responses, SSE streams included, are relayed byte for byte.

    python3 conformance_credential_proxy.py LISTEN_PORT ADAPTER_PORT CREDENTIAL_FILE

Prints "listening" once it accepts connections. Loopback only; not for production.
"""

from __future__ import annotations

import asyncio
import sys

MAX_HEAD = 64 * 1024


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


def rewrite_head(head: bytes, credential: str) -> tuple[bytes, int]:
    """The request head with our Authorization and `Connection: close`; the body length."""
    lines = head.decode("latin-1").split("\r\n")
    request_line, headers = lines[0], [line for line in lines[1:] if line]
    kept, length = [], 0
    for line in headers:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        if key in ("authorization", "connection", "keep-alive"):
            continue
        if key == "transfer-encoding":
            raise ValueError("chunked request bodies are not supported")
        if key == "content-length":
            length = int(value.strip())
        kept.append(line)
    kept += [f"Authorization: Bearer {credential}", "Connection: close"]
    return ("\r\n".join([request_line, *kept]) + "\r\n\r\n").encode("latin-1"), length


async def handle(client_r, client_w, adapter_port: int, credential: str) -> None:
    try:
        head = await client_r.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEAD:
            raise ValueError("request head too large")
        head, length = rewrite_head(head, credential)
        body = await client_r.readexactly(length) if length else b""
        up_r, up_w = await asyncio.open_connection("127.0.0.1", adapter_port)
    except (ValueError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
        client_w.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        print(f"credential proxy: {e}", file=sys.stderr)
        client_w.close()
        return
    up_w.write(head + body)
    await up_w.drain()
    # One request per connection: the adapter closes after its response.
    await pipe(up_r, client_w)
    up_w.close()


async def main() -> None:
    listen_port, adapter_port, credential_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    with open(credential_file) as f:
        credential = f.read().strip()
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, adapter_port, credential), "127.0.0.1", listen_port, limit=MAX_HEAD
    )
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
