"""The MCP call benchmark: drives every target, measures, hands rows to report.py.

    python3 measure.py PLAN.json

PLAN.json (written by conformance/bench/run.sh):

    {"seconds": 10, "connections": [1, 16], "sdk_calls": 200,
     "sdk_python": ".../venv-mcp-2.3.0/bin/python", "out_dir": "...",
     "pgbench": {"url": "postgres://...", "postmaster": 1234},
     "targets": [{"key": "dbhub", "name": "...", "url": "http://.../mcp",
                  "tool": "execute_sql", "bearer": "", "pids": [..]}, ...]}

For every target and connection count: one MCP session per connection
(initialize + notifications/initialized, when the target hands out an
`Mcp-Session-Id`), then wrk with one thread per connection, keep-alive
HTTP/1.1, a unique JSON-RPC id per request and every response checked
(harness/mcp_call.lua). CPU is read from /proc before and after each run
(procstat.py). The floor is pgbench `SELECT 1` at the same connection counts.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

import procstat
import report

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOCOL = "2025-11-25"
IDLE_SAMPLE_S = 3


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- MCP sessions ---------------------------------------------------------------
def _post(conn: http.client.HTTPConnection, path: str, body: dict, headers: dict):
    conn.request("POST", path, json.dumps(body), headers)
    r = conn.getresponse()
    return r, r.read()


def open_sessions(url: str, bearer: str, n: int) -> list[str]:
    """n initialised sessions; an empty id for a stateless target."""
    u = urllib.parse.urlsplit(url)
    base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if bearer:
        base["Authorization"] = f"Bearer {bearer}"
    out = []
    for i in range(n):
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "ewii-bench", "version": "1"},
            },
        }
        r, body = _post(c, u.path, init, base)
        if r.status != 200 or b'"result"' not in body:
            raise SystemExit(f"initialize at {url}: {r.status} {body[:300]!r}")
        sid = r.getheader("mcp-session-id") or ""
        h = dict(base, **({"Mcp-Session-Id": sid, "MCP-Protocol-Version": PROTOCOL} if sid else {}))
        r, _ = _post(c, u.path, {"jsonrpc": "2.0", "method": "notifications/initialized"}, h)
        if r.status not in (200, 202, 204):
            raise SystemExit(f"notifications/initialized at {url}: {r.status}")
        c.close()
        out.append(sid)
    return out


def check_one_call(target: dict, sid: str) -> None:
    """One tools/call before the runs: the tool exists and answers SELECT 1."""
    u = urllib.parse.urlsplit(target["url"])
    h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if target["bearer"]:
        h["Authorization"] = f"Bearer {target['bearer']}"
    if sid:
        h.update({"Mcp-Session-Id": sid, "MCP-Protocol-Version": PROTOCOL})
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": target["tool"], "arguments": {"sql": "SELECT 1"}},
    }
    r, body = _post(c, u.path, call, h)
    c.close()
    if r.status != 200 or b'"result"' not in body or b'"isError":true' in body:
        raise SystemExit(f"{target['name']}: tools/call {target['tool']} failed: {r.status} {body[:400]!r}")


# --- runs -----------------------------------------------------------------------
def run_wrk(target: dict, conns: int, seconds: int, sessions_file: str) -> dict:
    cmd = [
        "wrk", "-t", str(conns), "-c", str(conns), "-d", f"{seconds}s", "--timeout", "10s",
        "-s", os.path.join(HERE, "mcp_call.lua"), target["url"],
        "--", target["tool"], target["bearer"], sessions_file,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"wrk against {target['name']} failed: {out.stdout}\n{out.stderr}")
    return json.loads(lines[-1])


def measure_target(target: dict, conns: int, seconds: int, postmaster: int, work: str) -> dict:
    sids = open_sessions(target["url"], target["bearer"], conns)
    sessions_file = os.path.join(work, f"sessions-{target['key']}-{conns}")
    with open(sessions_file, "w") as f:
        f.write("\n".join(sids) + "\n")
    cpu0, db0 = procstat.cpu_seconds(target["pids"]), procstat.postgres_cpu_seconds(postmaster)
    w = run_wrk(target, conns, seconds, sessions_file)
    cpu1, db1 = procstat.cpu_seconds(target["pids"]), procstat.postgres_cpu_seconds(postmaster)
    calls = w["requests"]
    if w["bad"] or w["socket_errors"]:
        log(f"  {target['name']}: {w['bad']} bad responses, {w['socket_errors']} socket errors; first: {w['bad_sample']}")
    return {
        "key": target["key"], "target": target["name"], "client": "wrk keep-alive", "conns": conns,
        "calls": calls, "calls_s": calls / (w["duration_us"] / 1e6),
        "p50_ms": w["p50_us"] / 1000, "p99_ms": w["p99_us"] / 1000,
        "cpu_us": (cpu1 - cpu0) * 1e6 / max(calls, 1), "db_cpu_us": (db1 - db0) * 1e6 / max(calls, 1),
        "rss": procstat.rss_bytes(target["pids"]), "ok": w["ok"], "bad": w["bad"] + w["socket_errors"],
        "sessions": "per connection" if sids[0] else "stateless",
    }  # fmt: skip


def measure_sdk(target: dict, plan: dict, postmaster: int) -> dict:
    n = plan["sdk_calls"]
    cpu0, db0 = procstat.cpu_seconds(target["pids"]), procstat.postgres_cpu_seconds(postmaster)
    cmd = [plan["sdk_python"], os.path.join(HERE, "sdk_calls.py"), target["url"], target["bearer"], target["tool"], str(n)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    cpu1, db1 = procstat.cpu_seconds(target["pids"]), procstat.postgres_cpu_seconds(postmaster)
    if out.returncode != 0:
        raise SystemExit(f"SDK client against {target['name']} failed: {out.stderr[-2000:]}")
    r = json.loads(out.stdout.splitlines()[-1])
    return {
        "key": target["key"], "target": target["name"], "client": f"Python SDK {plan['sdk_version']}", "conns": 1,
        "calls": n, "calls_s": n / r["seconds"], "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
        # n + 1 calls (one warm-up), plus initialize: close enough to n + 2.
        "cpu_us": (cpu1 - cpu0) * 1e6 / (n + 2), "db_cpu_us": (db1 - db0) * 1e6 / (n + 2),
        "rss": procstat.rss_bytes(target["pids"]), "ok": n, "bad": 0, "sessions": "one",
    }  # fmt: skip


def measure_pgbench(pg: dict, conns: int, seconds: int, work: str) -> dict:
    script = os.path.join(work, "select1.sql")
    with open(script, "w") as f:
        f.write("SELECT 1;\n")
    logs = tempfile.mkdtemp(prefix=f"pgbench-{conns}-", dir=work)
    db0 = procstat.postgres_cpu_seconds(pg["postmaster"])
    cmd = [
        "pgbench", "-n", "-f", script, "-c", str(conns), "-j", str(min(conns, 2)), "-T", str(seconds),
        "-l", "--sampling-rate", "0.2", pg["url"],
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, cwd=logs)
    time.sleep(0.5)  # the backends exit and are reaped: their CPU moves to the postmaster's cutime
    db1 = procstat.postgres_cpu_seconds(pg["postmaster"])
    if out.returncode != 0:
        raise SystemExit(f"pgbench failed: {out.stdout}\n{out.stderr}")
    tx = int(next(x for x in out.stdout.splitlines() if "transactions actually processed" in x).split(":")[1].split("/")[0])
    tps = float(next(x for x in out.stdout.splitlines() if x.startswith("tps =")).split()[2])
    lat = []
    for name in os.listdir(logs):
        with open(os.path.join(logs, name)) as f:
            lat.extend(int(line.split()[2]) for line in f if line.strip())
    lat.sort()
    return {
        "key": "pgbench", "target": "raw pgbench (SELECT 1)", "client": "pgbench", "conns": conns,
        "calls": tx, "calls_s": tps, "p50_ms": lat[len(lat) // 2] / 1000 if lat else 0,
        "p99_ms": lat[max(0, int(len(lat) * 0.99) - 1)] / 1000 if lat else 0,
        "cpu_us": 0.0, "db_cpu_us": (db1 - db0) * 1e6 / max(tx, 1),
        "rss": 0, "ok": tx, "bad": 0, "sessions": "one per client",
    }  # fmt: skip


def main(plan_file: str) -> int:
    with open(plan_file) as f:
        plan = json.load(f)
    work = tempfile.mkdtemp(prefix="ewii-bench-measure-")  # sessions files, pgbench logs
    try:
        return run(plan, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(plan: dict, work: str) -> int:
    seconds, pg = plan["seconds"], plan["pgbench"]
    rows = []
    for conns in plan["connections"]:
        log(f"pgbench SELECT 1, {conns} client(s), {seconds} s")
        rows.append(measure_pgbench(pg, conns, seconds, work))
    idle = {}
    for t in plan["targets"]:
        sid = open_sessions(t["url"], t["bearer"], 1)[0]
        check_one_call(t, sid)
        # What the target burns with no calls at all (timers, polling): it
        # inflates the CPU per call of slow runs, so it is reported apart.
        cpu0 = procstat.cpu_seconds(t["pids"])
        time.sleep(IDLE_SAMPLE_S)
        idle[t["key"]] = (procstat.cpu_seconds(t["pids"]) - cpu0) * 1000 / IDLE_SAMPLE_S
        log(f"{t['name']}: warm-up, {max(conns for conns in plan['connections'])} connections, 2 s")
        measure_target(t, max(plan["connections"]), 2, pg["postmaster"], work)
        for conns in plan["connections"]:
            log(f"{t['name']}: wrk, {conns} connection(s), {seconds} s")
            rows.append(measure_target(t, conns, seconds, pg["postmaster"], work))
        log(f"{t['name']}: official Python SDK, {plan['sdk_calls']} sequential calls")
        rows.append(measure_sdk(t, plan, pg["postmaster"]))
    started = plan.get("started", time.time())
    return report.write(rows, plan, time.time() - started, idle)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
