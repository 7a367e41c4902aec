"""MCP sessions with the official Python SDK (`mcp`), the 1.x line and 2.x alike.

The judges in this directory open every session here: streamable HTTP with the
caller's headers (the bearer), an initialised `ClientSession`, a deadline so a
hung server fails the test instead of the CI job. Results are compared as they
travel on the wire (camelCase keys), so one assertion serves both SDK majors
(2.x models use snake_case attributes such as `is_error`).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp import ClientSession

SDK_VERSION = importlib.metadata.version("mcp")
SDK_MAJOR = int(SDK_VERSION.split(".")[0])
# Any single session, so a hung server fails the test instead of the CI job.
SESSION_TIMEOUT_S = 60

try:  # mcp >= 1.24 (and 2.x): the caller brings the HTTP client, and so the headers.
    from mcp.client.streamable_http import streamable_http_client

    try:  # the SDK's own factory: an httpx client with the SDK's timeouts
        from mcp.shared._httpx_utils import create_mcp_http_client
    except ImportError:  # pragma: no cover - a private module, may move
        import httpx

        def create_mcp_http_client(headers: dict[str, str]) -> Any:
            return httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=300))

    @asynccontextmanager
    async def _streams(url: str, headers: dict[str, str]):
        async with create_mcp_http_client(headers=headers) as http:
            async with streamable_http_client(url, http_client=http) as streams:
                yield streams

except ImportError:  # pragma: no cover - older SDKs take the headers themselves
    from mcp.client.streamable_http import streamablehttp_client

    @asynccontextmanager
    async def _streams(url: str, headers: dict[str, str]):
        async with streamablehttp_client(url, headers=headers) as streams:
            yield streams


@asynccontextmanager
async def open_session(url: str, headers: dict[str, str]):
    """An initialised MCP session with the server at `url`."""
    async with _streams(url, headers) as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            yield session


def with_session(url: str, headers: dict[str, str], fn: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    """Run fn(session) in a fresh session, within SESSION_TIMEOUT_S."""

    async def main() -> Any:
        with anyio.fail_after(SESSION_TIMEOUT_S):
            async with open_session(url, headers) as session:
                return await fn(session)

    return anyio.run(main)


def wire(model: Any) -> dict[str, Any]:
    """An SDK model as it travels on the wire (camelCase keys), whatever the SDK major version."""
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


async def list_tools(session: ClientSession) -> dict[str, dict[str, Any]]:
    """tools/list as {name: tool on the wire}."""
    return {t["name"]: t for t in (wire(t) for t in (await session.list_tools()).tools)}


async def call(session: ClientSession, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """tools/call, the result on the wire."""
    return wire(await session.call_tool(tool, args))


def error_text(result: dict[str, Any]) -> str:
    """The text blocks of a tool result, joined."""
    return " ".join(c.get("text", "") for c in result.get("content", []) if c.get("type") == "text").strip()


def flatten(error: BaseException) -> str:
    """An exception with its group members and causes, as one line."""
    parts = [f"{type(error).__name__}: {error}"]
    for inner in getattr(error, "exceptions", ()):
        parts.append(flatten(inner))
    if error.__cause__ is not None:
        parts.append(flatten(error.__cause__))
    return " | ".join(parts)
