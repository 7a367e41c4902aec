"""The MongoDB driver's tools through the hub and the tunnel, with the official
Python SDK as the agent (run by conformance/sdk/run-hub-mongodb.sh against the
nx-27017 stand-in, which is not MongoDB).

The deployment is `eu`, the database `mg` (collection `orders`, 12 documents:
`_id` 1..12, `customer` c0..c2, `total` = 10 × `_id`).
"""

from __future__ import annotations

import json
import os

from sdk_session import call, error_text, list_tools, with_session

URL = os.environ["EWII_HUB_MCP_URL"]
with open(os.environ["EWII_HUB_AGENT_CREDENTIAL_FILE"], encoding="utf-8") as f:
    HEADERS = {"Authorization": f"Bearer {f.read().strip()}"}


def run(fn):
    return with_session(URL, HEADERS, fn)


def test_the_document_tools_are_listed_read_only():
    tools = run(list_tools)
    for name in ("find", "aggregate", "count", "distinct", "list_collections", "describe_collection"):
        tool = tools[f"eu_mg_{name}"]
        annotations = tool.get("annotations") or {}
        assert annotations.get("readOnlyHint") is True, (name, annotations)
        assert annotations.get("destructiveHint") is not True, (name, annotations)


def test_find_with_filter_sort_and_limit():
    result = run(lambda s: call(s, "eu_mg_find", {
        "collection": "orders",
        "filter": {"customer": "c1"},
        "sort": {"total": -1},
        "limit": 2,
    }))
    assert result.get("isError") is not True, error_text(result)
    data = result["structuredContent"]
    text = json.dumps(data)
    assert data["returned"] == 2, text
    assert [d["total"] for d in data["documents"]] == [100, 70], text


def test_aggregate_and_count():
    result = run(lambda s: call(s, "eu_mg_aggregate", {
        "collection": "orders",
        "pipeline": [{"$group": {"_id": "$customer", "sum": {"$sum": "$total"}}}, {"$sort": {"_id": 1}}],
    }))
    assert result.get("isError") is not True, error_text(result)
    groups = result["structuredContent"]["documents"]
    assert {g["_id"]: g["sum"] for g in groups} == {"c0": 300, "c1": 220, "c2": 260}, result
    count = run(lambda s: call(s, "eu_mg_count", {"collection": "orders", "filter": {"total": {"$gte": 50}}}))
    assert count.get("isError") is not True, error_text(count)
    assert "8" in json.dumps(count["structuredContent"]), count


def test_a_write_stage_is_refused_and_nothing_changes():
    result = run(lambda s: call(s, "eu_mg_aggregate", {
        "collection": "orders",
        "pipeline": [{"$facet": {"x": [{"$match": {}}]}}, {"$out": "stolen"}],
    }))
    assert result.get("isError") is True, result
    assert "$out" in error_text(result), error_text(result)
    collections = run(lambda s: call(s, "eu_mg_list_collections", {}))
    assert "stolen" not in json.dumps(collections), collections
