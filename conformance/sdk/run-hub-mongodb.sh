#!/usr/bin/env bash
# The official Python SDK (mcp 2.x) as an AI agent of the hub, calling the
# MongoDB driver's tools through the tunnel: the real-binary kit
# (conformance/flows/kit.sh) with a MongoDB database attached to the adapter,
# served by the nx-27017 wire-protocol stand-in (scripts/test-mongodb.sh; a
# server backed by SQLite, NOT MongoDB: no MongoDB server can be installed
# here). Then conformance/sdk/python/test_hub_mongodb.py lists the tools
# (honest read-only annotations) and calls find, aggregate, count and a
# refused $out through the hub.
#
#   EWII_CACHE, EWII_BIN_DIR, EWII_KEEP_TMP: as for conformance/flows/kit.sh
#   EWII_MONGO_PORT: the stand-in's port (default 57117)
set -euo pipefail
# shellcheck source=../flows/kit.sh
source "$(dirname "${BASH_SOURCE[0]}")/../flows/kit.sh"

py2="$(python_sdk "$EWII_MCP_PY_2")"
export EWII_MONGO_PORT="${EWII_MONGO_PORT:-57117}"
export EWII_MONGO_STATE="${TMPDIR:-/tmp}/ewii-sdk-mongodb.$$"
stop_stand_in() { bash "$repo/scripts/test-mongodb.sh" stop >/dev/null 2>&1 || true; }

export KIT_POSTGRES=0
kit_init sdk-hub-mongodb
trap 'stop_stand_in; kit_cleanup' EXIT
stand_in_env="$(bash "$repo/scripts/test-mongodb.sh" start)"
eval "$stand_in_env"
say "nx-27017 on 127.0.0.1:$EWII_MONGO_PORT is a wire-compatible stand-in, NOT MongoDB"
nx_python="$(dirname "$EWII_NX27017_BIN")/python"
"$nx_python" - "$EWII_MONGO_PORT" <<'PY' || fail "cannot seed the stand-in"
import sys, pymongo
db = pymongo.MongoClient("127.0.0.1", int(sys.argv[1]))["shop"]
db.orders.drop()
db.orders.insert_many([
    {"_id": i, "customer": f"c{i % 3}", "total": i * 10, "items": [{"sku": "a", "qty": i}]}
    for i in range(1, 13)
])
PY
pass "seeded shop.orders (12 documents) on the stand-in"

kit_hub
kit_adapter
"${adapter[@]}" add-database mg --driver mongodb --url "mongodb://127.0.0.1:$EWII_MONGO_PORT/shop" \
    >>"$work/adapter-cli.log" 2>&1 || fail "ewii-adapter add-database mg --driver mongodb"
pass "ewii-adapter add-database mg --driver mongodb (while serve runs)"
kit_client
python3 "$python_dir/raw_mcp.py" wait-tools "$hub_mcp_url" --bearer-file "$agent_credential" \
    --timeout "$WAIT_S" eu_mg_find || fail "the hub did not list eu_mg_find"
pass "the hub lists eu_mg_find to the agent"

export EWII_HUB_MCP_URL="$hub_mcp_url" EWII_HUB_AGENT_CREDENTIAL_FILE="$agent_credential"
timeout 300 "$py2" -m pytest -q -rs -p no:cacheprovider "$python_dir/test_hub_mongodb.py" \
    || fail "the Python SDK against the MongoDB tools through the hub"
pass "python mcp $EWII_MCP_PY_2: MongoDB tools listed and called through hub and tunnel (stand-in: nx-27017)"
