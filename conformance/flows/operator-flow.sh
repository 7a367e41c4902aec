#!/usr/bin/env bash
# Ewii end to end, as an operator and a customer run it, with the official Python
# MCP SDK as the AI agent (conformance/sdk/python/test_hub_agent.py):
#
#   operator  ewii-hub workspace create / deployment create / agent create / hub-ca,
#             then ewii-hub serve (QUIC for tunnels and enrolment, HTTP /mcp for agents)
#   customer  ewii-adapter init / add-database (SQLite shop, PostgreSQL crm) / serve
#             (401 for a caller without its local credential, 403 for a foreign Origin),
#             ewii-client run --enrollment-token-file --adapter-credential-file (enrols,
#             gets its SVID, connects, presents the adapter's local credential)
#   agent     tools/list and tools/call through the hub and the tunnel; 401 without
#             a valid credential
#   customer  a second client with the used token is refused ("already been used");
#             kill -9 of the client: it restarts from its state without the token;
#             SIGTERM: the signed goodbye revokes it (restart refused, old SVID
#             refused as revoked); a new token brings it back; the audit chain verifies
#
# The processes come from the real-binary kit (conformance/flows/kit.sh): fresh hub
# data (SQLite, generated master.key), adapter home and client state under one
# mktemp -d; every process is stopped at exit.
#
#   binaries           EWII_BIN_DIR, default ${CARGO_TARGET_DIR:-~/.cache/ewii/target}/debug
#   PostgreSQL         EWII_TEST_POSTGRES_URL (scripts/test-databases.sh); without it the
#                      PostgreSQL part prints SKIPPED, and under CI=true the script fails
#   EWII_CACHE         where the venv lives (default: ~/.cache/ewii)
#   EWII_MCP_VERSION   Python SDK version for the agent (default: the 1.x pin in
#                      conformance/toolchain.sh; conformance/sdk/run-hub.sh runs both lines)
#   EWII_KEEP_TMP=1    keep the temp dir (logs, hub data, client state) after the run
#   extra arguments    passed to pytest (e.g. -x, -k postgres)
set -euo pipefail
# shellcheck source=kit.sh
source "$(dirname "${BASH_SOURCE[0]}")/kit.sh"

MCP_VERSION="${EWII_MCP_VERSION:-$EWII_MCP_PY_1}"
py="$(python_sdk "$MCP_VERSION")"
kit_init hub-flow
"$client_bin" run --help | grep -q -- --enrollment-token-file \
    || fail "$client_bin has no \`run --enrollment-token-file\`: rebuild it"
cd "$repo"

kit_hub
kit_adapter

# The adapter serves only its client: a local process without the credential, or a
# page on another localhost port, is refused before any MCP message is read.
"$py" - "$adapter_addr" "$adapter_credential" "$python_dir" <<'EOF' || fail "ewii-adapter served a caller it should refuse"
import json, sys
sys.path.insert(0, sys.argv[3])
import raw_mcp
addr, credential = sys.argv[1], open(sys.argv[2]).read().strip()
url, init = f"http://{addr}/mcp", raw_mcp.initialize_message("flow")
status, headers, reply = raw_mcp.post(url, init, {})
assert status == 401 and "mcp-session-id" not in headers, (status, headers, reply)
assert "--adapter-credential-file" in json.loads(reply)["error"]["message"], reply
status, headers, _ = raw_mcp.post(url, init, {"Authorization": "Bearer " + credential,
                                               "Origin": "http://localhost:" + addr.split(":")[1]})
assert status == 403 and "mcp-session-id" not in headers, (status, headers)
status, headers, _ = raw_mcp.post(url, init, {"Authorization": "Bearer " + credential})
assert status == 200 and headers.get("mcp-session-id"), (status, headers)
EOF
pass "ewii-adapter: 401 without its local credential, 403 for a foreign localhost Origin, 200 with it"

kit_client
for f in svid.pem svid.key; do [[ -s "$work/client/$f" ]] || fail "enrolment left no $f in the state dir"; done
[[ "$(stat -c %a "$work/client/svid.key")" == 600 ]] || fail "svid.key is mode $(stat -c %a "$work/client/svid.key")"
if command -v openssl >/dev/null; then
    openssl x509 -in "$work/client/svid.pem" -noout -ext subjectAltName | grep -qF "URI:$spiffe_id" \
        || fail "the enrolled SVID does not carry $spiffe_id"
fi
pass "the enrolled client holds svid.pem and svid.key (0600) for $spiffe_id"

# --- agent -------------------------------------------------------------------
say "== agent: official Python MCP SDK $MCP_VERSION against $hub_mcp_url"
export EWII_HUB_MCP_URL="$hub_mcp_url" EWII_HUB_AGENT_CREDENTIAL_FILE="$agent_credential" EWII_HUB_DEPLOYMENT=eu \
    EWII_HUB_POSTGRES="$postgres" EWII_MCP_VERSION="$MCP_VERSION"
agent_tests="$python_dir/test_hub_agent.py"
# -p no:cacheprovider: keep .pytest_cache out of the work tree. -rs: list skips.
timeout 300 "$py" -m pytest -v -rs -p no:cacheprovider "$agent_tests" "$@" \
    || fail "the agent tests (pytest output above)"
grep -q "\"event\":\"forward\",\"destination\":\"tcp:$adapter_addr\"" "$work/client/connections.jsonl" \
    || fail "the client logged no forward to tcp:$adapter_addr"
pass "agent: tools/list, tools/call on shop$( ((postgres)) && echo ' and crm') through hub and tunnel;" \
    "401 without a valid credential"

# --- customer: the token is single-use ---------------------------------------
say "== customer: a second client with the used token"
rc=0
timeout "$WAIT_S" "$client_bin" run "${client_args[@]}" --state "$work/client-2" \
    >"$work/client-2.out" 2>"$work/client-2.log" || rc=$?
((rc != 0)) || fail "a second client enrolled with the used token"
((rc != 124)) || fail "the second client neither enrolled nor exited within ${WAIT_S}s"
grep -q "already been used" "$work/client-2.log" \
    || fail "the second client's stderr does not say the token was already used"
[[ ! -e "$work/client-2/svid.pem" ]] || fail "the refused client has an SVID anyway"
pass "second client with the used token exits $rc: $(grep -o 'error:.*' "$work/client-2.log" | head -n 1)"

# --- customer: a crash does not revoke ----------------------------------------
say "== customer: kill -9 of the client, then a restart from its state (token already used)"
kill -KILL "$client_pid" 2>/dev/null || true
wait "$client_pid" 2>/dev/null || true
"$client_bin" run "${client_args[@]}" --state "$work/client" >"$work/client-restart.log" 2>&1 &
client_pid=$!
pids+=("$client_pid")
wait_for "the restarted ewii-client bringing the tunnel up" "$client_pid" events 2 tunnel_up
events 2 enrolled && fail "the restarted client enrolled again instead of using its SVID"
timeout 120 "$py" -m pytest -q -p no:cacheprovider "$agent_tests" -k "sqlite_count or postgres" \
    >"$work/pytest-restart.log" 2>&1 || { cat "$work/pytest-restart.log"; fail "agent calls after the client restart"; }
pass "after kill -9 the client reconnects with its saved SVID (no new enrolment) and the agent's calls work again"

# --- customer: a graceful stop revokes ----------------------------------------
say "== customer: SIGTERM (docker stop) sends the signed goodbye; the hub revokes"
cp "$work/client/svid.pem" "$work/old-svid.pem"
cp "$work/client/svid.key" "$work/old-svid.key"
kill -TERM "$client_pid"
rc=0
wait "$client_pid" || rc=$?
((rc == 0)) || fail "ewii-client exited $rc on SIGTERM (see $work/client-restart.log)"
grep -q "revoked at the hub" "$work/client-restart.log" \
    || { cat "$work/client-restart.log"; fail "the client did not report the revocation on stop"; }
[[ ! -e "$work/client/svid.pem" && ! -e "$work/client/svid.key" ]] \
    || fail "the stopped client kept its SVID"
rc=0
timeout "$WAIT_S" "$client_bin" run "${client_args[@]}" --state "$work/client" \
    >"$work/client-after-stop.out" 2>"$work/client-after-stop.log" || rc=$?
((rc == 2)) || fail "restart after SIGTERM: expected exit 2 (token used), got $rc: $(cat "$work/client-after-stop.log")"
rc=0
timeout "$WAIT_S" "$client_bin" run --hub "$hub_quic" --hub-ca "$work/hub-ca.pem" --allow "tcp:$adapter_addr" \
    --adapter-credential-file "$adapter_credential" --state "$work/client-old" --svid "$work/old-svid.pem" --key "$work/old-svid.key" \
    >"$work/client-old.out" 2>"$work/client-old.log" || rc=$?
((rc == 3)) || fail "the revoked SVID: expected exit 3 (revoked), got $rc: $(cat "$work/client-old.log")"
pass "after SIGTERM the restart is refused (exit 2, token used) and the old SVID is refused as revoked (exit 3)"

say "== operator: a new token brings the deployment back"
"${hub[@]}" --json deployment token --workspace acme eu >"$work/token-2.json"
json_field enrolment_token <"$work/token-2.json" >"$work/enrolment-token-2"
"$client_bin" run --hub "$hub_quic" --hub-ca "$work/hub-ca.pem" --allow "tcp:$adapter_addr" \
    --adapter-credential-file "$adapter_credential" --enrollment-token-file "$work/enrolment-token-2" --state "$work/client" >"$work/client-back.log" 2>&1 &
client_pid=$!
pids+=("$client_pid")
wait_for "the re-enrolled ewii-client bringing the tunnel up" "$client_pid" events 3 tunnel_up
timeout 120 "$py" -m pytest -q -p no:cacheprovider "$agent_tests" -k "sqlite_count" \
    >"$work/pytest-back.log" 2>&1 || { cat "$work/pytest-back.log"; fail "agent calls after re-enrolment"; }
"${hub[@]}" audit verify >"$work/audit-verify.out" || fail "audit verify: $(cat "$work/audit-verify.out")"
pass "re-enrolled with a new token; agent calls work; $(cat "$work/audit-verify.out")"

if ((!postgres)) && [[ "${CI:-}" == true ]]; then
    fail "the PostgreSQL part was SKIPPED, which CI does not allow (set EWII_TEST_POSTGRES_URL)"
fi
say "hub operator flow: all checks passed"
