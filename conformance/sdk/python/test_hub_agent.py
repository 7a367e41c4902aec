"""An AI agent's view of the hub, with the official Python MCP SDK (1.x or 2.x).

conformance/flows/kit.sh brings up the real binaries: `ewii-hub serve` with a
workspace, a deployment and an agent; `ewii-adapter serve` with the SQLite
`shop` database (and the PostgreSQL `crm` database when the runner has
PostgreSQL); `ewii-client run` enrolled with the deployment's token. Every test
talks to the hub's MCP endpoint over streamable HTTP with the agent's bearer,
the way a deployed agent does; each call crosses the QUIC tunnel to the adapter.

Run by conformance/sdk/run-hub.sh (once per SDK) and conformance/flows/operator-flow.sh.

Environment:
    EWII_HUB_MCP_URL                 the hub's MCP URL (`mcp_url` of `ewii-hub serve --json`)
    EWII_HUB_AGENT_CREDENTIAL_FILE   file holding the agent's bearer credential (`ewii-hub agent create`)
    EWII_HUB_DEPLOYMENT              the deployment name, the tools' prefix (default: eu)
    EWII_HUB_POSTGRES                "1" when the PostgreSQL database `crm` is attached
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import raw_mcp
import sdk_session
from sample_data import ACCOUNTS, CUSTOMERS
from sdk_session import SDK_MAJOR, call, error_text, flatten

TOOL_SUFFIXES = ("query", "list_schemas", "list_tables", "describe_table", "explain")
# From tunnel up to the deployment's tools showing in the agent's tools/list.
CATALOG_TIMEOUT_S = 30

MCP_URL = os.environ.get("EWII_HUB_MCP_URL", "")
CREDENTIAL_FILE = os.environ.get("EWII_HUB_AGENT_CREDENTIAL_FILE", "")
DEPLOYMENT = os.environ.get("EWII_HUB_DEPLOYMENT", "eu")
POSTGRES = os.environ.get("EWII_HUB_POSTGRES") == "1"
DATABASES = ["shop"] + (["crm"] if POSTGRES else [])
WRONG_CREDENTIAL = "ewii_agent_not-a-real-credential"


def agent_headers(credential: str | None = None) -> dict[str, str]:
    if credential is not None:
        return {"Authorization": f"Bearer {credential}"}
    return raw_mcp.bearer(CREDENTIAL_FILE)


def with_session(fn, credential: str | None = None) -> Any:
    """Run fn(session) in a fresh agent session."""
    return sdk_session.with_session(MCP_URL, agent_headers(credential), fn)


def query(database: str, sql: str, params: list[Any]) -> dict[str, Any]:
    """tools/call DEPLOYMENT_DATABASE_query; asserts success and returns structuredContent."""
    tool = f"{DEPLOYMENT}_{database}_query"
    result = with_session(lambda s: call(s, tool, {"sql": sql, "params": params}))
    assert not result.get("isError"), f"{tool} failed: {error_text(result)}"
    content = result.get("structuredContent")
    assert content is not None, f"{tool}: no structuredContent in {result}"
    return content


# --- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tools() -> dict[str, dict[str, Any]]:
    """The agent's tools/list, once the deployment's catalog has reached the hub.

    The kit waits for the client's `tunnel_up`; the hub then fetches the
    adapter's catalog through the tunnel, so poll briefly instead of racing it.
    """
    if not MCP_URL or not CREDENTIAL_FILE:
        pytest.fail("EWII_HUB_MCP_URL / EWII_HUB_AGENT_CREDENTIAL_FILE not set: run conformance/sdk/run-hub.sh")

    wanted = {f"{DEPLOYMENT}_{db}_query" for db in DATABASES}
    deadline = time.monotonic() + CATALOG_TIMEOUT_S
    while True:
        listed = with_session(sdk_session.list_tools)
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
    [{"Authorization": f"Bearer {WRONG_CREDENTIAL}"}, {}],
    ids=["wrong-credential", "no-credential"],
)
def test_unauthenticated_agent_gets_401(headers: dict[str, str]) -> None:
    status, response_headers, body = raw_mcp.post(MCP_URL, raw_mcp.initialize_message("ewii-hub-agent"), headers)
    assert status == 401, f"got HTTP {status}, expected 401: {body}"
    assert response_headers.get("www-authenticate", "").lower().startswith("bearer"), response_headers


def test_sdk_with_wrong_credential_is_refused() -> None:
    """The SDK's session fails at once (no hang, no tools) with a wrong credential.

    SDK 1.x surfaces the HTTP status (httpx.HTTPStatusError ... 401); 2.x turns
    any HTTP error into a generic MCPError, so there the 401 is the raw check above.
    """
    with pytest.raises(BaseException) as failure:  # the SDK's task group raises an ExceptionGroup
        with_session(lambda s: s.list_tools(), credential=WRONG_CREDENTIAL)
    text = flatten(failure.value)
    assert "TimeoutError" not in text, f"the refused session hung: {text}"
    if SDK_MAJOR < 2:
        assert "401" in text, f"no 401 in {text}"


@pytest.mark.parametrize(
    "method", ["prompts/list", "resources/list", "resources/templates/list", "completion/complete"]
)
def test_undeclared_capabilities_are_unknown_methods(method: str) -> None:
    """The hub declares only tools; methods of the other capabilities are -32601, not empty results."""
    params = {"ref": {"type": "ref/prompt", "name": "x"}, "argument": {"name": "a", "value": "b"}}
    reply = raw_mcp.request(MCP_URL, agent_headers(), method, params if method == "completion/complete" else None)
    assert reply.get("error", {}).get("code") == -32601, f"{method}: {reply}"


def test_sdk_version_is_the_pinned_one() -> None:
    """The runner pins the SDK; the venv must hold exactly that version."""
    wanted = os.environ.get("EWII_MCP_VERSION")
    if wanted:
        assert sdk_session.SDK_VERSION == wanted, (sdk_session.SDK_VERSION, wanted)
