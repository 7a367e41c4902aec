"""End-to-end tests of `ewii-adapter serve` driven by the official Python MCP SDK.

The adapter is started once per module on a free loopback port; every test opens
its own MCP session over streamable HTTP, the way a real client would.

Binary: $EWII_ADAPTER_BIN, default ${CARGO_TARGET_DIR:-~/.cache/ewii/target}/debug/ewii-adapter.

Other databases: $EWII_PY_EXTRA_DATABASES may hold a JSON list of
[name, driver, url, placeholder] entries, e.g.
    [["pg", "postgres", "postgres://reader:pw@127.0.0.1:5432/shop", "$n"]]
Each is attached next to the built-in SQLite database `shop` and every test runs
against it too. Such a database must already hold the `customers` table of
`sample_data.customers_sql()` (the adapter attaches databases read-only, so the tests cannot
seed it). placeholder is "?" (SQLite, MySQL) or "$n" (PostgreSQL: $1, $2, ...).

Every session presents the adapter's local credential (the home's
`local-credential` file, made by `init`) as `Authorization: Bearer ...`, as the
Ewii client does; the tests also check that a caller without it gets 401.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import raw_mcp
import sdk_session
from mcp import ClientSession
from sample_data import CUSTOMERS, customers_sql
from sdk_session import call, error_text

TOOL_SUFFIXES = ("query", "list_schemas", "list_tables", "describe_table", "explain")
STARTUP_TIMEOUT_S = 60


@dataclass(frozen=True)
class Database:
    name: str
    driver: str
    url: str | None  # None: the built-in SQLite file, created by the fixture
    placeholder: str = "?"

    def ph(self, n: int) -> str:
        """The n-th (1-based) bind placeholder in this database's style."""
        return f"${n}" if self.placeholder == "$n" else "?"


def _extra_databases() -> list[Database]:
    raw = os.environ.get("EWII_PY_EXTRA_DATABASES", "").strip()
    return [Database(*entry) for entry in json.loads(raw)] if raw else []


DATABASES = [Database("shop", "sqlite", None)] + _extra_databases()


def _adapter_bin() -> Path:
    if bin_ := os.environ.get("EWII_ADAPTER_BIN"):
        return Path(bin_)
    cache = os.environ.get("EWII_CACHE") or str(Path.home() / ".cache/ewii")
    target = os.environ.get("CARGO_TARGET_DIR") or f"{cache}/target"
    return Path(target) / "debug" / "ewii-adapter"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Adapter:
    url: str
    host: str  # host:port, for raw HTTP requests
    log: Path
    credential: str  # the home's local credential, sent as a bearer

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"}

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory):
    binary = _adapter_bin()
    if not os.access(binary, os.X_OK):
        pytest.fail(f"ewii-adapter binary not found at {binary} (set EWII_ADAPTER_BIN)")

    tmp = tmp_path_factory.mktemp("ewii")
    db_file = tmp / "shop.db"
    with sqlite3.connect(db_file) as conn:
        conn.executescript(customers_sql())
    conn.close()

    env = dict(os.environ, EWII_ADAPTER_HOME=str(tmp / "home"), EWII_ENROLLMENT_TOKEN=secrets.token_hex(32))

    def run(*args: str) -> None:
        done = subprocess.run([str(binary), *args], check=False, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"ewii-adapter {' '.join(args[:2])} failed:\n{done.stdout}\n{done.stderr}"

    run("init", "--workspace-id", "ws-test")
    for db in DATABASES:
        url = db.url or f"sqlite://{db_file}"
        run("add-database", db.name, "--driver", db.driver, "--url", url)

    port = _free_port()
    log = tmp / "serve.log"
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen(
            [str(binary), "serve", "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
        )
    credential = (tmp / "home" / "local-credential").read_text().strip()
    info = Adapter(url=f"http://127.0.0.1:{port}/mcp", host=f"127.0.0.1:{port}", log=log, credential=credential)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ewii-adapter serve exited with {proc.returncode}:\n{info.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"ewii-adapter serve did not listen within {STARTUP_TIMEOUT_S}s:\n{info.log_tail()}")
                time.sleep(0.2)
        yield info
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=DATABASES, ids=lambda db: db.name)
def db(request: pytest.FixtureRequest) -> Database:
    return request.param


# --- helpers -----------------------------------------------------------------


def with_session(adapter: Adapter, fn: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    """Run fn(session) inside a fresh, initialised MCP session."""
    return sdk_session.with_session(adapter.url, adapter.auth(), fn)


def count_customers(session: ClientSession, db: Database) -> Awaitable[dict[str, Any]]:
    return call(session, f"{db.name}_query", {"sql": "SELECT COUNT(*) AS n FROM customers", "params": []})


# --- tests -------------------------------------------------------------------


def test_tools_list_advertises_all_tools(adapter: Adapter, db: Database) -> None:
    tools = with_session(adapter, sdk_session.list_tools)
    for suffix in TOOL_SUFFIXES:
        name = f"{db.name}_{suffix}"
        assert name in tools, f"{name} missing from tools/list: {sorted(tools)}"
        tool = tools[name]
        assert tool.get("inputSchema", {}).get("type") == "object", f"{name}: bad inputSchema {tool.get('inputSchema')}"
        assert tool.get("outputSchema", {}).get("type") == "object", (
            f"{name}: bad outputSchema {tool.get('outputSchema')}"
        )


def test_parameterised_query_returns_expected_rows(adapter: Adapter, db: Database) -> None:
    sql = f"SELECT id, name FROM customers WHERE country = {db.ph(1)} AND id > {db.ph(2)} ORDER BY id"
    result = with_session(adapter, lambda s: call(s, f"{db.name}_query", {"sql": sql, "params": ["DE", 2]}))

    assert not result.get("isError"), error_text(result)
    content = result.get("structuredContent")
    assert content is not None, f"no structuredContent in {result}"
    expected = [[i, n] for i, n, c in CUSTOMERS if c == "DE" and i > 2]
    assert [c["name"].lower() for c in content["columns"]] == ["id", "name"]
    assert content["rows"] == expected
    assert content["row_count"] == len(expected)
    assert content.get("offset", 0) == 0
    assert "truncated" not in content
    # The text block carries the same JSON, for clients that ignore structuredContent.
    texts = [c["text"] for c in result["content"] if c.get("type") == "text"]
    assert texts and json.loads(texts[0]) == content


def test_write_is_refused_on_read_only_database(adapter: Adapter, db: Database) -> None:
    async def body(session: ClientSession) -> tuple[dict[str, Any], dict[str, Any]]:
        deleted = await call(session, f"{db.name}_query", {"sql": "DELETE FROM customers", "params": []})
        return deleted, await count_customers(session, db)

    deleted, count = with_session(adapter, body)
    assert deleted.get("isError") is True, f"DELETE was not refused: {deleted}"
    assert error_text(deleted), "refusal carries no message"
    assert not count.get("isError"), error_text(count)
    assert int(count["structuredContent"]["rows"][0][0]) == len(CUSTOMERS)


def test_bad_sql_is_a_tool_error_and_server_keeps_answering(adapter: Adapter, db: Database) -> None:
    async def body(session: ClientSession) -> tuple[dict[str, Any], dict[str, Any]]:
        bad = await call(session, f"{db.name}_query", {"sql": "SELEC name FROM nowhere", "params": []})
        return bad, await count_customers(session, db)

    bad, after = with_session(adapter, body)
    assert bad.get("isError") is True, f"bad SQL did not fail: {bad}"
    assert error_text(bad), "error result carries no message"
    assert not after.get("isError"), f"same session stopped answering: {error_text(after)}"
    # ... and so does a brand-new session.
    again = with_session(adapter, lambda s: count_customers(s, db))
    assert not again.get("isError"), error_text(again)


def test_unknown_tool_is_a_protocol_error(adapter: Adapter) -> None:
    """A name no tool has is JSON-RPC -32602 (as at the hub), not a tool result."""
    reply = raw_mcp.request(
        adapter.url, adapter.auth(), "tools/call", {"name": "no_such_db_query", "arguments": {"sql": "SELECT 1"}}
    )
    error = reply.get("error", {})
    assert error.get("code") == -32602, f"unknown tool: {reply}"
    assert "unknown tool" in error.get("message", ""), reply


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "evil.example.com"},
        {"Origin": "http://evil.example.com"},
    ],
    ids=["foreign-host", "foreign-origin"],
)
def test_dns_rebinding_is_refused(adapter: Adapter, headers: dict[str, str]) -> None:
    # With the right credential: the 403 is about Host/Origin alone.
    status, _ = _raw_initialize(adapter, {**adapter.auth(), **headers})
    assert status == 403, f"request with {headers} got HTTP {status}, expected 403"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer ewii_local_wrong"}, {"Authorization": "Basic x"}],
    ids=["no-credential", "wrong-credential", "not-a-bearer"],
)
def test_a_caller_without_the_local_credential_gets_401(adapter: Adapter, headers: dict[str, str]) -> None:
    status, body = _raw_initialize(adapter, headers)
    assert status == 401, f"request with {headers} got HTTP {status}, expected 401"
    message = json.loads(body)["error"]["message"]
    assert "local-credential" in message and "--adapter-credential-file" in message, message


def test_the_local_credential_opens_the_endpoint(adapter: Adapter) -> None:
    status, _ = _raw_initialize(adapter, adapter.auth())
    assert status == 200


def _raw_initialize(adapter: Adapter, headers: dict[str, str]) -> tuple[int, str]:
    status, _, body = raw_mcp.post(adapter.url, raw_mcp.initialize_message("rebinding-test"), headers)
    return status, body


@pytest.mark.parametrize(
    "method", ["prompts/list", "resources/list", "resources/templates/list", "completion/complete"]
)
def test_undeclared_capabilities_are_unknown_methods(adapter: Adapter, method: str) -> None:
    """The adapter declares only tools; methods of the other capabilities are -32601, not empty results."""
    params = {"ref": {"type": "ref/prompt", "name": "x"}, "argument": {"name": "a", "value": "b"}}
    reply = raw_mcp.request(adapter.url, adapter.auth(), method, params if method == "completion/complete" else None)
    assert reply.get("error", {}).get("code") == -32601, f"{method}: {reply}"
