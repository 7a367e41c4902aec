"""The AI agent's half of scripts/test-hub-python.sh, with the official Python MCP SDK.

scripts/test-hub-python.sh plays the operator (`ewii-hub` workspace, deployment,
agent, `serve`) and the customer (`ewii-adapter` with SQLite and PostgreSQL
databases, `ewii-client` enrolled with the deployment's token), then runs this
file with pytest. Every test talks to the hub's MCP endpoint over streamable
HTTP, the way a deployed agent does; each call crosses the QUIC tunnel to the
customer's adapter.

Environment (set by the shell script):
    EWII_FLOW_MCP_URL      the hub's MCP URL (`mcp_url` of `ewii-hub serve --json`)
    EWII_FLOW_CREDENTIAL   the agent's bearer credential (`ewii-hub agent create`)
    EWII_FLOW_DEPLOYMENT   the deployment name, the tools' prefix (default: eu)
    EWII_FLOW_POSTGRES     "1" when the PostgreSQL database `crm` is attached
"""

from __future__ import annotations

import http.client
import importlib.metadata
import json
import os
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import ClientSession

try:  # mcp >= 1.24 (and 2.x): the caller brings the HTTP client, and so the headers.
    from mcp.client.streamable_http import streamable_http_client as _new_http_client

    # The SDK's own factory: an httpx (1.x) or httpx2 (2.x) client with the SDK's timeouts.
    from mcp.shared._httpx_utils import create_mcp_http_client

    _old_http_client = None
except ImportError:  # pragma: no cover - older SDKs take the headers themselves
    from mcp.client.streamable_http import streamablehttp_client as _old_http_client

    _new_http_client = None

# The shop database (SQLite) the shell script seeds; crm (PostgreSQL) below.
CUSTOMERS = [
    (1, "Anna", "DE"),
    (2, "Bruno", "DE"),
    (3, "Chloe", "FR"),
    (4, "Dieter", "DE"),
    (5, "Emma", "US"),
    (6, "Farid", "FR"),
    (7, "Greta", "DE"),
    (8, "Hugo", "US"),
    (9, "Ilse", "DE"),
    (10, "Jules", "FR"),
]
ACCOUNTS = [
    (1, "Acme GmbH", "gold", 1200),
    (2, "Bolt SA", "silver", 300),
    (3, "Cargo BV", "gold", 80),
    (4, "Delta AG", "gold", 450),
    (5, "Echo Ltd", "bronze", 20),
]


def seed_sql(dialect: str) -> str:
    """SQL creating and filling the test's table: `sqlite` (customers) or `postgres` (accounts)."""
    if dialect == "sqlite":
        rows = "".join(f"INSERT INTO customers VALUES ({i}, '{n}', '{c}');\n" for i, n, c in CUSTOMERS)
        return "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, country TEXT);\n" + rows
    rows = "".join(f"INSERT INTO accounts VALUES ({i}, '{n}', '{t}', {m});\n" for i, n, t, m in ACCOUNTS)
    return "CREATE TABLE accounts (id integer PRIMARY KEY, name text NOT NULL, tier text, mrr integer);\n" + rows


TOOL_SUFFIXES = ("query", "list_schemas", "list_tables", "describe_table", "explain")
# From tunnel up to the deployment's tools showing in the agent's tools/list.
CATALOG_TIMEOUT_S = 30
# Any single MCP session, so a hung hub fails the test instead of the CI job.
SESSION_TIMEOUT_S = 60

MCP_URL = os.environ.get("EWII_FLOW_MCP_URL", "")
CREDENTIAL = os.environ.get("EWII_FLOW_CREDENTIAL", "")
DEPLOYMENT = os.environ.get("EWII_FLOW_DEPLOYMENT", "eu")
POSTGRES = os.environ.get("EWII_FLOW_POSTGRES") == "1"
DATABASES = ["shop"] + (["crm"] if POSTGRES else [])
SDK_MAJOR = int(importlib.metadata.version("mcp").split(".")[0])


# --- helpers -----------------------------------------------------------------


def _wire(model: Any) -> dict[str, Any]:
    """An SDK model as it travels on the wire (camelCase keys), whatever the SDK major version."""
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


@asynccontextmanager
async def agent_session(credential: str):
    """An initialised MCP session with the hub, authenticated as the agent."""
    headers = {"Authorization": f"Bearer {credential}"}
    if _new_http_client is not None:
        async with create_mcp_http_client(headers=headers) as http:
            async with _new_http_client(MCP_URL, http_client=http) as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    await session.initialize()
                    yield session
    else:  # pragma: no cover
        async with _old_http_client(MCP_URL, headers=headers) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                yield session


def with_session(fn: Callable[[ClientSession], Awaitable[Any]], credential: str | None = None) -> Any:
    """Run fn(session) in a fresh agent session, within SESSION_TIMEOUT_S."""

    async def main() -> Any:
        with anyio.fail_after(SESSION_TIMEOUT_S):
            async with agent_session(credential or CREDENTIAL) as session:
                return await fn(session)

    return anyio.run(main)


async def call(session: ClientSession, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    return _wire(await session.call_tool(tool, args))


def error_text(result: dict[str, Any]) -> str:
    return " ".join(c.get("text", "") for c in result.get("content", []) if c.get("type") == "text").strip()


def query(database: str, sql: str, params: list[Any]) -> dict[str, Any]:
    """tools/call DEPLOYMENT_DATABASE_query; asserts success and returns structuredContent."""
    tool = f"{DEPLOYMENT}_{database}_query"
    result = with_session(lambda s: call(s, tool, {"sql": sql, "params": params}))
    assert not result.get("isError"), f"{tool} failed: {error_text(result)}"
    content = result.get("structuredContent")
    assert content is not None, f"{tool}: no structuredContent in {result}"
    return content


def raw_initialize(headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    """POST an MCP initialize to the hub without the SDK: (status, headers, body)."""
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "ewii-hub-flow", "version": "0"},
            },
        }
    )
    url = urllib.parse.urlsplit(MCP_URL)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request(
            "POST",
            url.path,
            body=body,
            headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers},
        )
        response = conn.getresponse()
        headers_out = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers_out, response.read().decode(errors="replace")
    finally:
        conn.close()


# --- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tools() -> dict[str, dict[str, Any]]:
    """The agent's tools/list, once the deployment's catalog has reached the hub.

    The shell script waits for the client's `tunnel_up`; the hub then fetches the
    adapter's catalog through the tunnel, so poll briefly instead of racing it.
    """
    if not MCP_URL or not CREDENTIAL:
        pytest.fail("EWII_FLOW_MCP_URL / EWII_FLOW_CREDENTIAL not set: run scripts/test-hub-python.sh")

    async def body(session: ClientSession) -> dict[str, dict[str, Any]]:
        return {t["name"]: t for t in (_wire(t) for t in (await session.list_tools()).tools)}

    wanted = {f"{DEPLOYMENT}_{db}_query" for db in DATABASES}
    deadline = time.monotonic() + CATALOG_TIMEOUT_S
    while True:
        listed = with_session(body)
        if wanted <= listed.keys() or time.monotonic() > deadline:
            return listed
        time.sleep(0.5)


# --- tests -------------------------------------------------------------------


@pytest.mark.parametrize("database", DATABASES)
def test_tools_list_has_the_deployments_tools(tools: dict[str, dict[str, Any]], database: str) -> None:
    for suffix in TOOL_SUFFIXES:
        name = f"{DEPLOYMENT}_{database}_{suffix}"
        assert name in tools, f"{name} missing from the hub's tools/list: {sorted(tools)}"
        assert tools[name].get("inputSchema", {}).get("type") == "object", f"{name}: {tools[name]}"
    stray = [n for n in tools if not n.startswith(f"{DEPLOYMENT}_")]
    assert not stray, f"tools not of deployment {DEPLOYMENT!r}: {stray}"


def test_sqlite_count_through_the_tunnel(tools: dict[str, dict[str, Any]]) -> None:
    content = query("shop", "SELECT count(*) AS n FROM customers", [])
    assert content["rows"] == [[len(CUSTOMERS)]], content
    assert [c["name"] for c in content["columns"]] == ["n"], content


def test_sqlite_parameterised_query(tools: dict[str, dict[str, Any]]) -> None:
    content = query("shop", "SELECT id, name FROM customers WHERE country = ? AND id > ? ORDER BY id", ["FR", 3])
    assert content["rows"] == [[i, n] for i, n, c in CUSTOMERS if c == "FR" and i > 3], content


def test_postgres_parameterised_query(tools: dict[str, dict[str, Any]]) -> None:
    if not POSTGRES:
        pytest.skip("SKIPPED: no PostgreSQL (EWII_TEST_POSTGRES_URL unset), eu_crm_query not attached")
    content = query(
        "crm",
        "SELECT id, name, mrr FROM accounts WHERE tier = $1 AND mrr >= $2 ORDER BY mrr DESC",
        ["gold", 100],
    )
    expected = sorted(([i, n, m] for i, n, t, m in ACCOUNTS if t == "gold" and m >= 100), key=lambda r: -r[2])
    assert content["rows"] == expected, content
    assert [c["name"] for c in content["columns"]] == ["id", "name", "mrr"], content


def test_write_is_refused_end_to_end(tools: dict[str, dict[str, Any]]) -> None:
    tool = f"{DEPLOYMENT}_shop_query"
    result = with_session(lambda s: call(s, tool, {"sql": "DELETE FROM customers", "params": []}))
    assert result.get("isError") is True, f"DELETE through the hub was not refused: {result}"
    assert error_text(result), "the refusal carries no message"
    assert query("shop", "SELECT count(*) AS n FROM customers", [])["rows"] == [[len(CUSTOMERS)]]


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer ewii_agent_not-a-real-credential"}, {}],
    ids=["wrong-credential", "no-credential"],
)
def test_unauthenticated_agent_gets_401(headers: dict[str, str]) -> None:
    status, response_headers, body = raw_initialize(headers)
    assert status == 401, f"got HTTP {status}, expected 401: {body}"
    assert response_headers.get("www-authenticate", "").lower().startswith("bearer"), response_headers


def test_sdk_with_wrong_credential_is_refused() -> None:
    """The SDK's session fails at once (no hang, no tools) with a wrong credential.

    SDK 1.x surfaces the HTTP status (httpx.HTTPStatusError ... 401); 2.x turns
    any HTTP error into a generic MCPError, so there the 401 is the raw check above.
    """
    with pytest.raises(BaseException) as failure:  # the SDK's task group raises an ExceptionGroup
        with_session(lambda s: s.list_tools(), credential="ewii_agent_not-a-real-credential")
    text = _flatten(failure.value)
    assert "TimeoutError" not in text, f"the refused session hung: {text}"
    if SDK_MAJOR < 2:
        assert "401" in text, f"no 401 in {text}"


def _flatten(error: BaseException) -> str:
    parts = [f"{type(error).__name__}: {error}"]
    for inner in getattr(error, "exceptions", ()):
        parts.append(_flatten(inner))
    if error.__cause__ is not None:
        parts.append(_flatten(error.__cause__))
    return " | ".join(parts)
