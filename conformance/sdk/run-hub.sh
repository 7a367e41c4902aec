#!/usr/bin/env bash
# The official SDK clients as AI agents of the hub, through the tunnel: the
# real-binary kit (conformance/flows/kit.sh: ewii-hub serve, ewii-adapter serve
# with the SQLite sample and, when EWII_TEST_POSTGRES_URL is set, a PostgreSQL
# database, ewii-client enrolled with its token), then with the agent's bearer:
#
#   python mcp 2.x   conformance/sdk/python/test_hub_agent.py
#   python mcp 1.x   the same file
#   typescript       conformance/sdk/typescript/hub_agent.test.mjs (node --test,
#                    @modelcontextprotocol/sdk, StreamableHTTPClientTransport)
#
# Each lists the tools and runs queries (SQLite, PostgreSQL) through the hub.
# Versions: conformance/toolchain.sh. Ends with one summary line per SDK.
#
#   EWII_CACHE, EWII_BIN_DIR, EWII_KEEP_TMP: as for conformance/flows/kit.sh
#   Under CI=true a missing PostgreSQL fails the run instead of skipping.
set -euo pipefail
# shellcheck source=../flows/kit.sh
source "$(dirname "${BASH_SOURCE[0]}")/../flows/kit.sh"

py2="$(python_sdk "$EWII_MCP_PY_2")"
py1="$(python_sdk "$EWII_MCP_PY_1")"
node_bin="$(node22)"
ts_dir="$(ts_sdk)"

kit_init sdk-hub
kit_hub
kit_adapter
kit_client
kit_wait_tools
if ((!postgres)) && [[ "${CI:-}" == true ]]; then
    fail "no PostgreSQL database (EWII_TEST_POSTGRES_URL unset), which CI does not allow"
fi

export EWII_HUB_MCP_URL="$hub_mcp_url" EWII_HUB_AGENT_CREDENTIAL_FILE="$agent_credential" \
    EWII_HUB_DEPLOYMENT=eu EWII_HUB_POSTGRES="$postgres"
summary=()
failed=0

# run_sdk LABEL LOG COMMAND...: runs one client's tests, keeps the runner's closing line.
run_sdk() {
    local label="$1" log="$work/$2"; shift 2
    say "== $label against $hub_mcp_url"
    local rc=0
    timeout 300 "$@" 2>&1 | tee "$log" || rc=$?
    local counts
    counts="$(grep -E '^(=+ )?[0-9]+ (passed|failed)|^ℹ (pass|fail|skipped) ' "$log" | tr '\n' ' ')"
    if ((rc == 0)); then
        summary+=("PASS  $label: $counts")
    else
        summary+=("FAIL  $label (exit $rc): $counts")
        failed=1
    fi
}

for pair in "$EWII_MCP_PY_2:$py2" "$EWII_MCP_PY_1:$py1"; do
    version="${pair%%:*}"
    EWII_MCP_VERSION="$version" run_sdk "python mcp $version" "pytest-$version.log" \
        "${pair#*:}" -m pytest -q -rs -p no:cacheprovider "$python_dir/test_hub_agent.py"
done

python3 "$python_dir/sample_data.py" json >"$work/sample.json"
EWII_TS_SDK_DIR="$ts_dir" EWII_SAMPLE_DATA="$work/sample.json" \
    run_sdk "typescript @modelcontextprotocol/sdk $EWII_MCP_TS (node $("$node_bin/node" --version))" node-test.log \
    "$node_bin/node" --test --test-reporter=spec "$repo/conformance/sdk/typescript/hub_agent.test.mjs"

say "== official SDK clients through the hub"
printf '%s\n' "${summary[@]}"
((failed == 0)) || fail "an SDK client failed against the hub (its output above)"
