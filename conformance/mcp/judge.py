"""Judges the official MCP conformance suite's results against a checked-in baseline.

conformance/mcp/run.sh runs `conformance server ... -o DIR` once per suite run
(e.g. `--suite all`, `--requirements 2026-07-28`) and target, then calls

    python3 judge.py --version V --target T --baseline baseline-V.txt \\
        --run LABEL:RESULTS_DIR:LIST_FILE [--run ...] [--markdown FILE]

LIST_FILE is the suite's own `conformance list` output for that run: every
server scenario named there must have a result, so a scenario that crashed or
was skipped cannot pass silently. A scenario fails when one of its checks has
status FAILURE (WARNING is a SHOULD: counted, not failed).

Baseline lines: `scenario check targets reason...` (a line starting with `#` is a comment).
`check` is a check id, or `*` for the whole scenario; `targets` is `adapter`,
`hub` or `adapter,hub`. The judge fails the run when
  - a failing check is not in the baseline (a regression, or a real bug), or
  - a baseline line does not fail (the scenario or check now passes: drop the
    line, so the baseline stays honest), or names a scenario no run has.
Prints one line per scenario and one summary line per run; exits 1 on any of
the above.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d\d-\d\dT[\d-]+Z$")
LIST_ITEM = re.compile(r"^\s+- (?P<name>\S+)(?:\s+\[(?P<tag>[^\]]*)\])?\s*$")


@dataclass(frozen=True)
class Expected:
    scenario: str
    check: str  # a check id, or "*"
    reason: str


@dataclass
class Outcome:
    scenario: str
    failing: dict[str, str] = field(default_factory=dict)  # check id -> message
    passed_checks: int = 0
    warnings: int = 0


def read_baseline(path: Path, target: str) -> list[Expected]:
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(None, 3)
        if len(fields) < 4:
            raise SystemExit(f"{path}:{number}: expected `scenario check targets reason`, got {line!r}")
        scenario, check, targets, reason = fields
        unknown = set(targets.split(",")) - {"adapter", "hub"}
        if unknown:
            raise SystemExit(f"{path}:{number}: unknown target(s) {sorted(unknown)}")
        if target in targets.split(","):
            entries.append(Expected(scenario, check, reason))
    return entries


def server_scenarios(list_output: str) -> list[str]:
    """The server scenarios a `conformance list` output names (scored or not)."""
    names, section = [], ""
    for line in list_output.splitlines():
        if line and not line[0].isspace():
            section = line
            continue
        item = LIST_ITEM.match(line)
        if not item:
            continue
        if section.startswith("Server scenarios") or (
            section.startswith("Run and reported") and item.group("tag") == "server"
        ):
            names.append(item.group("name"))
    if not names:
        raise SystemExit(f"no server scenarios in the list output:\n{list_output}")
    return names


def read_results(directory: Path) -> dict[str, Outcome]:
    outcomes = {}
    for entry in sorted(directory.iterdir()):
        match = RESULT_DIR.match(entry.name)
        if not match or not (entry / "checks.json").is_file():
            continue
        outcome = Outcome(match.group("scenario"))
        for check in json.loads((entry / "checks.json").read_text()):
            status = check.get("status")
            if status == "FAILURE":
                outcome.failing[check["id"]] = check.get("errorMessage") or check.get("description", "")
            elif status == "WARNING":
                outcome.warnings += 1
            elif status == "SUCCESS":
                outcome.passed_checks += 1
        outcomes[outcome.scenario] = outcome
    return outcomes


def judge_run(label: str, scenarios: list[str], outcomes: dict[str, Outcome], baseline: list[Expected],
              heading: str, markdown: list[str]) -> tuple[int, set[str]]:
    """Prints the run's verdicts; returns (unexpected count, scenarios seen)."""
    passed = expected = unexpected = warnings = checks_ok = checks_failed = 0
    markdown += [f"\n#### {heading}\n", "| scenario | result | checks passed / failed | expected failure: why |",
                 "| --- | --- | --- | --- |"]
    for scenario in scenarios:
        outcome = outcomes.get(scenario) or Outcome(scenario, {"(no result)": "the suite wrote no checks.json"})
        entries = [e for e in baseline if e.scenario == scenario]
        whole = [e for e in entries if e.check == "*"]
        failing = outcome.failing
        warnings += outcome.warnings
        checks_ok += outcome.passed_checks
        checks_failed += len(failing)
        uncovered = {} if whole else {c: m for c, m in failing.items() if c not in {e.check for e in entries}}
        stale = ([e for e in whole if not failing]
                 + [e for e in entries if e.check != "*" and e.check not in failing])
        counts = f"{outcome.passed_checks} / {len(failing)}"
        if uncovered or stale:
            unexpected += 1
            result = "UNEXPECTED"
            for check, message in uncovered.items():
                print(f"FAIL   {scenario}: {check}: {message}")
            for entry in stale:
                what = "the scenario" if entry.check == "*" else entry.check
                print(f"XPASS  {scenario}: {what} passes but the baseline expects it to fail ({entry.reason}): "
                      f"remove the line")
        elif failing:
            expected += 1
            result = "expected failure"
            reasons = "; ".join(dict.fromkeys(e.reason for e in entries))
            print(f"XFAIL  {scenario}: {reasons}")
        else:
            passed += 1
            result = "pass"
            print(f"PASS   {scenario}")
        why = "; ".join(dict.fromkeys(e.reason for e in entries)) if failing else ""
        markdown.append(f"| `{scenario}` | {result} | {counts} | {why} |")
    summary = (f"{heading}: {len(scenarios)} scenarios, {passed} passed, {expected} expected failures, "
               f"{unexpected} unexpected ({checks_ok} checks passed, {checks_failed} failed, {warnings} warnings)")
    print(summary)
    markdown.append(f"\n{summary}\n")
    return unexpected, set(scenarios)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", required=True, help="the suite's version, for the summary")
    parser.add_argument("--target", required=True, choices=["adapter", "hub"])
    parser.add_argument("--baseline", required=True, type=Path)
    parser.add_argument("--run", action="append", required=True, help="LABEL:RESULTS_DIR:LIST_FILE")
    parser.add_argument("--markdown", type=Path, help="append the verdicts as Markdown tables")
    args = parser.parse_args()

    baseline = read_baseline(args.baseline, args.target)
    unexpected, seen, markdown = 0, set(), []
    for run in args.run:
        label, results, listing = run.split(":", 2)
        heading = f"conformance {args.version} {label} vs {args.target}"
        scenarios = server_scenarios(Path(listing).read_text())
        bad, names = judge_run(label, scenarios, read_results(Path(results)), baseline, heading, markdown)
        unexpected += bad
        seen |= names
    for entry in baseline:
        if entry.scenario not in seen:
            print(f"STALE  baseline names {entry.scenario}, which no run of {args.version} has: remove the line")
            unexpected += 1
    if args.markdown:
        with args.markdown.open("a") as f:
            f.write("\n".join(markdown) + "\n")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
