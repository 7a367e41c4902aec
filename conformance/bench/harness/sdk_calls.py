"""Sequential MCP `tools/call` with the official Python SDK (`mcp`).

    python sdk_calls.py URL BEARER TOOL CALLS

One session (the SDK's streamable HTTP client, initialize included), then
CALLS sequential `tools/call TOOL {"sql": "SELECT 1"}`; every result must be
a success. Prints one JSON line: calls, seconds, p50_us, p99_us. Run with the
venv's python from conformance/toolchain.sh (`python_sdk`).
"""

from __future__ import annotations

import json
import os
import sys
import time

import anyio

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "sdk", "python"))
from sdk_session import open_session  # noqa: E402


async def main(url: str, bearer: str, tool: str, calls: int) -> None:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    latencies = []
    async with open_session(url, headers) as session:
        # One call outside the measurement: connection set-up, caches.
        await session.call_tool(tool, {"sql": "SELECT 1"})
        start = time.perf_counter()
        for _ in range(calls):
            t = time.perf_counter()
            result = await session.call_tool(tool, {"sql": "SELECT 1"})
            latencies.append(time.perf_counter() - t)
            if getattr(result, "is_error", getattr(result, "isError", False)):
                raise SystemExit(f"tool error from {url}: {result}")
        seconds = time.perf_counter() - start
    latencies.sort()
    print(
        json.dumps(
            {
                "calls": calls,
                "seconds": seconds,
                "p50_us": latencies[len(latencies) // 2] * 1e6,
                "p99_us": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1e6,
            }
        )
    )


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
