"""The cross-replica hop: the same tools/call through the replica that holds
the deployment's tunnel (local) and through another replica (cross), in one
run, with wrk keep-alive at 1 and 16 connections (measure.py's sessions, wrk
script and checks). Writes a Markdown table with p50, p99 and calls/s of
each, and the hop's cost (cross - local).

    python3 replica.py PLAN.json

PLAN.json (written by conformance/bench/run.sh, part `replica`):
    {"seconds": 10, "connections": [1, 16], "out": ".../replica.md",
     "versions": "...", "tool": "eu_shop_query", "bearer": "...",
     "local": {"url": ..., "pids": [...]}, "cross": {"url": ..., "pids": [...]}}
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import measure  # noqa: E402


def main() -> None:
    plan = json.load(open(sys.argv[1]))
    work = tempfile.mkdtemp(prefix="ewii-replica-bench-")
    targets = {
        key: {
            "key": key,
            "name": name,
            "url": plan[key]["url"],
            "tool": plan["tool"],
            "bearer": plan["bearer"],
            "pids": plan[key]["pids"],
        }
        for key, name in (
            ("local", "agent → replica B (holds the tunnel) → tunnel → adapter"),
            ("cross", "agent → replica A → replica B → tunnel → adapter"),
        )
    }
    for t in targets.values():
        measure.check_one_call(t, measure.open_sessions(t["url"], t["bearer"], 1)[0])
    rows = []
    for conns in plan["connections"]:
        for key in ("local", "cross"):
            measure.log(f"  {targets[key]['name']}, {conns} connection(s)")
            rows.append(measure.measure_target(targets[key], conns, plan["seconds"], 0, work))
    lines = [
        "# Cross-replica hop",
        "",
        f"{plan['versions']} wrk keep-alive, {plan['seconds']} s per run, `SELECT 1` on the SQLite",
        "shop; both replicas on one PostgreSQL store (durable audit there), loopback.",
        "",
        "| path | conns | calls/s | p50 ms | p99 ms | bad |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r['conns']} | {r['calls_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['bad']} |"
        )
    lines += ["", "| conns | hop p50 ms | hop p99 ms | calls/s cross / local |", "|---:|---:|---:|---:|"]
    for conns in plan["connections"]:
        local = next(r for r in rows if r["key"] == "local" and r["conns"] == conns)
        cross = next(r for r in rows if r["key"] == "cross" and r["conns"] == conns)
        lines.append(
            f"| {conns} | {cross['p50_ms'] - local['p50_ms']:+.2f} | {cross['p99_ms'] - local['p99_ms']:+.2f} "
            f"| {cross['calls_s'] / max(local['calls_s'], 1e-9):.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    with open(plan["out"], "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
