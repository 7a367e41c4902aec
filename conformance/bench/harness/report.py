"""The MCP call benchmark's outputs: table, ratios, regression check, plot.

Writes into plan["out_dir"]: `mcp-calls.json` (every row as measured),
`mcp-calls.md` (the table and the check, as pasted into BENCHMARKS.md) and
`mcp-calls.svg` (calls/s and p50 per target). Prints the same table.

The regression check (issue #14, item 2): with one keep-alive connection,
p99 under 5 ms for `ewii-adapter` direct and for the whole path. A FAIL makes
the exit status 3, after everything is written.
"""

from __future__ import annotations

import json
import math
import os
import time

P99_LIMIT_MS = 5.0
STALL_CHECKED = ("adapter", "whole")


def _find(rows, key, conns, client="wrk keep-alive"):
    for r in rows:
        if r["key"] == key and r["conns"] == conns and (key == "pgbench" or r["client"] == client):
            return r
    return None


def _ratio(a, b):
    return f"{a / b:.2f}" if a and b else "–"


def _fmt_ms(x):
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def table(rows) -> list[str]:
    head = (
        "| target | client | conns | calls/s | p50 ms | p99 ms | CPU/call, target | CPU/call, PostgreSQL "
        "| RSS, target | calls/s ÷ DBHub | calls/s ÷ pgbench | p50 ÷ DBHub | failed |"
    )
    out = [head, "|" + "---|" * 13]
    for r in rows:
        dbhub = _find(rows, "dbhub", r["conns"], r["client"])
        floor = _find(rows, "pgbench", r["conns"])
        is_peer = r["key"] in ("dbhub", "pgbench")
        cpu = "–" if r["key"] == "pgbench" else f"{r['cpu_us']:,.0f} µs"
        rss = f"{r['rss'] / 2**20:.0f} MiB" if r["rss"] else "–"
        if r["key"] == "dbhub":
            vs_dbhub = "1"
        elif is_peer or not dbhub:
            vs_dbhub = "–"
        else:
            vs_dbhub = _ratio(r["calls_s"], dbhub["calls_s"])
        wrk_like = floor and r["client"] != "pgbench" and "SDK" not in r["client"]
        vs_floor = _ratio(r["calls_s"], floor["calls_s"]) if wrk_like else "–"
        p50_vs = "–" if is_peer or not dbhub else _ratio(r["p50_ms"], dbhub["p50_ms"])
        out.append(
            f"| {r['target']} | {r['client']} | {r['conns']} | {r['calls_s']:,.0f} | {_fmt_ms(r['p50_ms'])} "
            f"| {_fmt_ms(r['p99_ms'])} | {cpu} | {r['db_cpu_us']:,.0f} µs | {rss} "
            f"| {vs_dbhub} | {vs_floor} | {p50_vs} | {r['bad']} of {r['ok'] + r['bad']} |"
        )
    return out


def checks(rows) -> tuple[list[str], bool]:
    """The regression check (PASS/FAIL) and the issue's targets (MET/SHORT)."""
    lines, ok = [], True
    for key in STALL_CHECKED:
        r = _find(rows, key, 1)
        if r is None:
            continue
        passed = r["p99_ms"] < P99_LIMIT_MS and r["bad"] == 0
        ok &= passed
        lines.append(
            f"{'PASS' if passed else 'FAIL'}  keep-alive stall check, {r['target']}: "
            f"1-connection p99 {r['p99_ms']:.2f} ms (limit {P99_LIMIT_MS:.0f} ms), {r['bad']} failed calls"
        )
    whole16, dbhub16 = _find(rows, "whole", 16), _find(rows, "dbhub", 16)
    whole1, dbhub1, adapter1 = _find(rows, "whole", 1), _find(rows, "dbhub", 1), _find(rows, "adapter", 1)

    def target(met, text):
        lines.append(f"{'MET  ' if met else 'SHORT'} issue #14 target: {text}")

    if whole16 and dbhub16:
        target(
            whole16["calls_s"] >= 3 * dbhub16["calls_s"],
            f"whole path at 16 connections ≥ 3× DBHub: {whole16['calls_s']:,.0f} vs "
            f"{dbhub16['calls_s']:,.0f} calls/s ({whole16['calls_s'] / dbhub16['calls_s']:.2f}×)",
        )
    if whole1 and dbhub1 and adapter1:
        target(
            whole1["p50_ms"] <= dbhub1["p50_ms"],
            f"whole-path p50 at 1 connection ≤ DBHub's: {whole1['p50_ms']:.2f} vs {dbhub1['p50_ms']:.2f} ms",
        )
        target(
            whole1["p50_ms"] <= adapter1["p50_ms"] + 0.5,
            f"whole-path p50 at 1 connection ≤ adapter direct + 0.5 ms: {whole1['p50_ms']:.2f} vs "
            f"{adapter1['p50_ms']:.2f} + 0.5 ms",
        )
    return lines, ok


# --- the plot: hand-written SVG, two log-scale panels ------------------------------
COLOURS = {1: "#4c78a8", 16: "#f58518", "sdk": "#54a24b"}


def _panel(x0, title, groups, value, unit, lo, hi):
    """One log-scale bar panel at x offset x0; groups = [(label, [(series, v)])]."""
    w, h, top, left = 440, 300, 40, 60
    out = [f'<text x="{x0 + left}" y="24" font-size="14" font-weight="bold">{title}</text>']
    y = lambda v: top + h - h * (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))  # noqa: E731
    d = math.floor(math.log10(lo))
    while 10**d <= hi:
        yy = y(10**d)
        out.append(f'<line x1="{x0 + left}" x2="{x0 + left + w}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{x0 + left - 6}" y="{yy + 4:.1f}" font-size="11" text-anchor="end">{10**d:g}</text>')
        d += 1
    out.append(
        f'<text x="{x0 + 14}" y="{top + h / 2}" font-size="11" transform="rotate(-90 {x0 + 14} {top + h / 2})" '
        f'text-anchor="middle">{unit} (log)</text>'
    )
    gw = w / max(len(groups), 1)
    for i, (label, series) in enumerate(groups):
        bw = (gw - 16) / max(len(series), 1)
        for j, (s, v) in enumerate(series):
            bx, by = x0 + left + i * gw + 8 + j * bw, y(v)
            out.append(
                f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bw - 2:.1f}" height="{top + h - by:.1f}" fill="{COLOURS[s]}">'
                f"<title>{label}, {s}: {value(v)}</title></rect>"
            )
            out.append(
                f'<text x="{bx + (bw - 2) / 2:.1f}" y="{by - 3:.1f}" font-size="9" text-anchor="middle">{value(v)}</text>'
            )
        for k, part in enumerate(label.split("\n")):
            out.append(
                f'<text x="{x0 + left + i * gw + gw / 2:.1f}" y="{top + h + 16 + 12 * k}" font-size="11" '
                f'text-anchor="middle">{part}</text>'
            )
    return out


def svg(rows) -> str:
    names = [("pgbench", "pgbench\nSELECT 1"), ("dbhub", "DBHub 1.4\ndirect"), ("adapter", "ewii-adapter\ndirect")]
    names.append(("whole", "agent→hub→tunnel\n→client→adapter"))
    thr, lat = [], []
    for key, label in names:
        s_thr, s_lat = [], []
        for c in (1, 16):
            r = _find(rows, key, c)
            if r:
                s_thr.append((c, r["calls_s"]))
                s_lat.append((c, r["p50_ms"]))
        sdk_client = next((r["client"] for r in rows if "SDK" in r["client"]), "")
        sdk = None if key == "pgbench" else _find(rows, key, 1, sdk_client)
        if sdk:
            s_lat.append(("sdk", sdk["p50_ms"]))
        thr.append((label, s_thr))
        lat.append((label, s_lat))
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="1040" height="420" font-family="sans-serif">']
    parts.append('<rect width="100%" height="100%" fill="white"/>')
    parts += _panel(0, "calls/s (higher is better)", thr, lambda v: f"{v:,.0f}", "calls/s", 10, 1e6)
    parts += _panel(520, "p50 latency (lower is better)", lat, lambda v: f"{v:.2f}", "ms", 0.01, 1000)
    for i, (s, text) in enumerate([(1, "1 connection (wrk)"), (16, "16 connections (wrk)"), ("sdk", "Python SDK, sequential")]):
        parts.append(f'<rect x="{70 + 200 * i}" y="396" width="12" height="12" fill="{COLOURS[s]}"/>')
        parts.append(f'<text x="{86 + 200 * i}" y="406" font-size="12">{text}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write(rows, plan, elapsed_s, idle) -> int:
    out = plan["out_dir"]
    os.makedirs(out, exist_ok=True)
    lines, ok = checks(rows)
    md = table(rows)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = [
        f"Measured {when}, {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at the end), "
        f"{plan['seconds']} s per wrk run, "
        f"MCP run {elapsed_s:.0f} s. {plan.get('versions', '')}",
        "",
    ]
    names = {r["key"]: r["target"] for r in rows}
    idle_line = "Idle CPU with no calls (timers, polling), ms of CPU per second: " + ", ".join(
        f"{names.get(k, k)} {v:.0f}" for k, v in idle.items()
    )
    md_all = header + md + ["", idle_line, "", "```"] + lines + ["```"]
    with open(os.path.join(out, "mcp-calls.md"), "w") as f:
        f.write("\n".join(md_all) + "\n")
    with open(os.path.join(out, "mcp-calls.json"), "w") as f:
        json.dump({"rows": rows, "idle_cpu_ms_per_s": idle, "checks": lines, "measured": when}, f, indent=1)
    with open(os.path.join(out, "mcp-calls.svg"), "w") as f:
        f.write(svg(rows))
    print("\n".join(md))
    print()
    print(idle_line)
    print()
    print("\n".join(lines))
    print(f"\nwritten: {out}/mcp-calls.md, mcp-calls.json, mcp-calls.svg")
    return 0 if ok else 3
