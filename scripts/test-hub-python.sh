#!/usr/bin/env bash
# Ewii end to end, as an operator and a customer run it, with the official Python
# MCP SDK as the AI agent (scripts/hub_operator_flow.py):
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
# Fresh hub data (SQLite, generated master.key), adapter home and client state
# under one mktemp -d; every process is stopped at exit.
#
#   binaries           ${CARGO_TARGET_DIR:-~/.cache/ewii/target}/debug (cargo build --workspace --bins),
#                      or EWII_BIN_DIR
#   PostgreSQL         EWII_TEST_POSTGRES_URL (scripts/test-databases.sh); without it the
#                      PostgreSQL part prints SKIPPED, and under CI=true the script fails
#   EWII_CACHE         where the venv lives (default: ~/.cache/ewii)
#   EWII_MCP_VERSION   SDK version to test with (default: the pin below)
#   EWII_KEEP_TMP=1    keep the temp dir (logs, hub data, client state) after the run
#   extra arguments    passed to pytest (e.g. -x, -k postgres)
set -euo pipefail
umask 077 # tokens, credentials and keys land in the temp dir
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in scripts/
export NO_COLOR=1                 # plain logs, for the tails shown on failure

# Same pins as scripts/test-python-mcp.sh.
MCP_VERSION="${EWII_MCP_VERSION:-1.30.0}"
PYTEST_VERSION="9.2.0"
WAIT_S=30 # every wait for a process to come up, enrol or connect

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${EWII_CACHE:-$HOME/.cache/ewii}"
venv="$cache/venv-mcp"
bin_dir="${EWII_BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/ewii/target}/debug}"
hub_bin="$bin_dir/ewii-hub" adapter_bin="$bin_dir/ewii-adapter" client_bin="$bin_dir/ewii-client"

say() { printf '%s\n' "$*"; }
pass() { printf 'PASS  %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*" >&2; exit 1; }

for b in "$hub_bin" "$adapter_bin" "$client_bin"; do
    [[ -x "$b" ]] || fail "$b not found: run \`cargo build --workspace --bins\` (or set EWII_BIN_DIR)"
done
"$client_bin" run --help | grep -q -- --enrollment-token-file \
    || fail "$client_bin has no \`run --enrollment-token-file\`: rebuild it"

if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p "$cache"
    python3 -m venv "$venv"
fi
# pip is a no-op (no network) when the pinned versions are already installed.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "mcp==$MCP_VERSION" "pytest==$PYTEST_VERSION"
py="$venv/bin/python"

work="$(mktemp -d "${TMPDIR:-/tmp}/ewii-hub-flow.XXXXXX")"
pids=() # every background process, stopped in cleanup
pg_db="" pg_url=""

stop_pid() { # TERM, up to 5 s, then KILL
    local pid="$1"
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "warning: pid $pid ignored SIGTERM for 5 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

show_logs() {
    local f
    for f in "$work"/*.log; do
        [[ -s "$f" ]] || continue
        printf '\n--- last lines of %s\n' "${f##*/}" >&2
        tail -n 25 "$f" >&2
    done
}

cleanup() {
    local rc=$?
    local pid
    for pid in "${pids[@]}"; do stop_pid "$pid"; done
    if [[ -n "$pg_db" ]]; then
        PGOPTIONS="-c client_min_messages=warning" psql "$pg_url" -q \
            -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if ((rc != 0)); then show_logs; fi
    if [[ "${EWII_KEEP_TMP:-0}" == 1 ]]; then say "kept $work" >&2; else rm -rf "$work"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_for DESCRIPTION PID COMMAND...: until COMMAND succeeds, PID exits, or WAIT_S pass.
wait_for() {
    local what="$1" pid="$2"; shift 2
    local deadline=$((SECONDS + WAIT_S))
    until "$@" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || fail "$what: the process exited (see its log below)"
        ((SECONDS < deadline)) || fail "$what: not within ${WAIT_S}s"
        sleep 0.2
    done
}

# json_field KEY < FILE: a field of the first JSON document in FILE.
json_field() {
    "$py" -c 'import json, sys; print(json.JSONDecoder().raw_decode(sys.stdin.read().lstrip())[0][sys.argv[1]])' "$1"
}

cd "$repo"

# --- operator ----------------------------------------------------------------
say "== operator: ewii-hub (data: fresh SQLite store, generated master key)"
hub=("$hub_bin" --data "$work/hub")
unset EWII_HUB_MASTER_KEY EWII_HUB_DATABASE_URL EWII_HUB_DATA

"${hub[@]}" --json workspace create acme >"$work/workspace.json"
[[ "$(json_field name <"$work/workspace.json")" == acme ]] || fail "workspace create: $(cat "$work/workspace.json")"
[[ -s "$work/hub/master.key" ]] || fail "workspace create did not generate $work/hub/master.key"
pass "ewii-hub workspace create acme (master.key generated)"

"${hub[@]}" --json deployment create --workspace acme eu >"$work/deployment.json"
token="$(json_field enrolment_token <"$work/deployment.json")"
spiffe_id="$(json_field spiffe_id <"$work/deployment.json")"
[[ ${#token} -ge 16 ]] || fail "deployment create printed no usable token: $(cat "$work/deployment.json")"
printf '%s\n' "$token" >"$work/enrolment-token"
pass "ewii-hub deployment create --workspace acme eu ($spiffe_id, single-use token)"

"${hub[@]}" --json agent create --workspace acme bot >"$work/agent.json"
credential="$(json_field credential <"$work/agent.json")"
[[ "$credential" == ewii_agent_* ]] || fail "agent create printed no credential: $(cat "$work/agent.json")"
pass "ewii-hub agent create --workspace acme bot (bearer credential)"

"${hub[@]}" hub-ca >"$work/hub-ca.pem"
grep -q 'BEGIN CERTIFICATE' "$work/hub-ca.pem" || fail "hub-ca printed no PEM certificate"
pass "ewii-hub hub-ca > hub-ca.pem"

# Port 0: the hub binds free ports and reports them in its JSON line.
"${hub[@]}" serve --quic 127.0.0.1:0 --http 127.0.0.1:0 --name 127.0.0.1 --json \
    >"$work/hub-serve.out" 2>"$work/hub-serve.log" &
hub_pid=$!
pids+=("$hub_pid")
wait_for "ewii-hub serve printing its addresses" "$hub_pid" grep -q '"mcp_url"' "$work/hub-serve.out"
quic="$(json_field quic <"$work/hub-serve.out")"
mcp_url="$(json_field mcp_url <"$work/hub-serve.out")"
pass "ewii-hub serve: QUIC $quic, agents at $mcp_url"

# --- customer: adapter -------------------------------------------------------
say "== customer: ewii-adapter (the deployment's token is the customer's secret)"
adapter=("$adapter_bin" --home "$work/adapter" --enrollment-token-file "$work/enrolment-token")
"$py" - "$work/shop.db" <<'EOF'
import sqlite3, sys
sys.path.insert(0, "scripts")
import hub_operator_flow as flow
with sqlite3.connect(sys.argv[1]) as conn:
    conn.executescript(flow.seed_sql("sqlite"))
conn.close()
EOF
"${adapter[@]}" init --workspace-id acme >"$work/adapter-cli.log" 2>&1 || fail "ewii-adapter init"
"${adapter[@]}" add-database shop --driver sqlite --url "sqlite://$work/shop.db" >>"$work/adapter-cli.log" 2>&1 \
    || fail "ewii-adapter add-database shop"
pass "ewii-adapter init --workspace-id acme; add-database shop (SQLite, customers: 10 rows)"
adapter_credential="$("${adapter[@]}" local-credential 2>>"$work/adapter-cli.log")" \
    || fail "ewii-adapter local-credential"
[[ "$adapter_credential" == "$work/adapter/local-credential" ]] \
    || fail "ewii-adapter local-credential printed '$adapter_credential'"
[[ "$(stat -c %a "$adapter_credential")" == 600 ]] || fail "local-credential is mode $(stat -c %a "$adapter_credential")"
pass "ewii-adapter local-credential: $adapter_credential (0600, made by init)"

postgres=0
if [[ -n "${EWII_TEST_POSTGRES_URL:-}" ]]; then
    command -v psql >/dev/null || fail "psql not found (scripts/test-databases.sh installs PostgreSQL)"
    pg_url="$EWII_TEST_POSTGRES_URL"
    pg_db="ewii_hub_flow_$$"
    PGOPTIONS="-c client_min_messages=warning" psql "$pg_url" -q -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS $pg_db" -c "CREATE DATABASE $pg_db" >/dev/null \
        || fail "cannot create the database $pg_db with EWII_TEST_POSTGRES_URL"
    "$py" -c 'import sys; sys.path.insert(0, "scripts"); import hub_operator_flow as f; print(f.seed_sql("postgres"))' \
        | psql "${pg_url%/*}/$pg_db" -q -v ON_ERROR_STOP=1 >/dev/null \
        || fail "cannot seed the database $pg_db"
    # As a customer would: the URL without the password, the password on stdin.
    { read -r pg_user; read -r pg_pass; read -r pg_hostport; } < <("$py" -c '
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(u.unquote(p.username or ""), u.unquote(p.password or ""), p.netloc.rpartition("@")[2], sep="\n")' "$pg_url")
    printf '%s\n' "$pg_pass" | "${adapter[@]}" add-database crm --driver postgres \
        --url "postgres://$pg_user@$pg_hostport/$pg_db" --password-stdin >>"$work/adapter-cli.log" 2>&1 \
        || fail "ewii-adapter add-database crm"
    postgres=1
    pass "ewii-adapter add-database crm (PostgreSQL $pg_hostport/$pg_db, password on stdin)"
else
    say "SKIPPED: PostgreSQL part (EWII_TEST_POSTGRES_URL unset; scripts/test-databases.sh start provides it)"
fi

"${adapter[@]}" serve --listen 127.0.0.1:0 >"$work/adapter-serve.out" 2>"$work/adapter-serve.log" &
adapter_pid=$!
pids+=("$adapter_pid")
wait_for "ewii-adapter serve" "$adapter_pid" grep -Eq 'http://127\.0\.0\.1:[0-9]+/mcp' "$work/adapter-serve.out"
adapter_addr="$(grep -Eo '127\.0\.0\.1:[0-9]+' "$work/adapter-serve.out" | head -n 1)"
pass "ewii-adapter serve on $adapter_addr"
# The adapter serves only its client: a local process without the credential, or a
# page on another localhost port, is refused before any MCP message is read.
"$py" - "$adapter_addr" "$adapter_credential" <<'EOF' || fail "ewii-adapter served a caller it should refuse"
import http.client, json, sys
addr, credential = sys.argv[1], open(sys.argv[2]).read().strip()
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "flow", "version": "0"}}})
def post(headers):
    host, port = addr.split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("POST", "/mcp", body=body, headers={"Content-Type": "application/json",
              "Accept": "application/json, text/event-stream", **headers})
    r = c.getresponse()
    return r.status, r.getheader("Mcp-Session-Id"), r.read()
status, session, reply = post({})
assert status == 401 and session is None, (status, session, reply)
assert "--adapter-credential-file" in json.loads(reply)["error"]["message"], reply
status, session, _ = post({"Authorization": "Bearer " + credential, "Origin": "http://localhost:" + addr.split(":")[1]})
assert status == 403 and session is None, (status, session)
status, session, _ = post({"Authorization": "Bearer " + credential})
assert status == 200 and session, (status, session)
EOF
pass "ewii-adapter: 401 without its local credential, 403 for a foreign localhost Origin, 200 with it"

# --- customer: client --------------------------------------------------------
say "== customer: ewii-client enrols with the token and connects"
client_args=(--hub "$quic" --hub-ca "$work/hub-ca.pem" --allow "tcp:$adapter_addr"
    --adapter-credential-file "$adapter_credential" --enrollment-token-file "$work/enrolment-token")
unset EWII_ENROLLMENT_TOKEN EWII_SVID EWII_SVID_KEY EWII_STATE EWII_HUB EWII_HUB_CA EWII_ALLOW \
    EWII_ADAPTER_CREDENTIAL EWII_ADAPTER_CREDENTIAL_FILE
# events N KIND: at least N events of KIND in the first client's connection log.
events() {
    local n
    n="$(grep -c "\"event\":\"$2\"" "$work/client/connections.jsonl" 2>/dev/null)" || true
    ((${n:-0} >= $1))
}
"$client_bin" run "${client_args[@]}" --state "$work/client" >"$work/client.log" 2>&1 &
client_pid=$!
pids+=("$client_pid")
wait_for "ewii-client enrolling and bringing the tunnel up" "$client_pid" events 1 tunnel_up
events 1 enrolled || fail "no 'enrolled' event in connections.jsonl"
for f in svid.pem svid.key; do [[ -s "$work/client/$f" ]] || fail "enrolment left no $f in the state dir"; done
[[ "$(stat -c %a "$work/client/svid.key")" == 600 ]] || fail "svid.key is mode $(stat -c %a "$work/client/svid.key")"
if command -v openssl >/dev/null; then
    openssl x509 -in "$work/client/svid.pem" -noout -ext subjectAltName | grep -qF "URI:$spiffe_id" \
        || fail "the enrolled SVID does not carry $spiffe_id"
fi
pass "ewii-client enrolled ($spiffe_id; svid.pem, svid.key 0600) and the tunnel is up"

# --- agent -------------------------------------------------------------------
say "== agent: official Python MCP SDK $MCP_VERSION against $mcp_url"
export EWII_FLOW_MCP_URL="$mcp_url" EWII_FLOW_CREDENTIAL="$credential" EWII_FLOW_DEPLOYMENT=eu \
    EWII_FLOW_POSTGRES="$postgres"
# -p no:cacheprovider: keep .pytest_cache out of the work tree. -rs: list skips.
timeout 300 "$py" -m pytest -v -rs -p no:cacheprovider scripts/hub_operator_flow.py "$@" \
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
timeout 120 "$py" -m pytest -q -p no:cacheprovider scripts/hub_operator_flow.py -k "sqlite_count or postgres" \
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
timeout "$WAIT_S" "$client_bin" run --hub "$quic" --hub-ca "$work/hub-ca.pem" --allow "tcp:$adapter_addr" \
    --adapter-credential-file "$adapter_credential" --state "$work/client-old" --svid "$work/old-svid.pem" --key "$work/old-svid.key" \
    >"$work/client-old.out" 2>"$work/client-old.log" || rc=$?
((rc == 3)) || fail "the revoked SVID: expected exit 3 (revoked), got $rc: $(cat "$work/client-old.log")"
pass "after SIGTERM the restart is refused (exit 2, token used) and the old SVID is refused as revoked (exit 3)"

say "== operator: a new token brings the deployment back"
"${hub[@]}" --json deployment token --workspace acme eu >"$work/token-2.json"
json_field enrolment_token <"$work/token-2.json" >"$work/enrolment-token-2"
"$client_bin" run --hub "$quic" --hub-ca "$work/hub-ca.pem" --allow "tcp:$adapter_addr" \
    --adapter-credential-file "$adapter_credential" --enrollment-token-file "$work/enrolment-token-2" --state "$work/client" >"$work/client-back.log" 2>&1 &
client_pid=$!
pids+=("$client_pid")
wait_for "the re-enrolled ewii-client bringing the tunnel up" "$client_pid" events 3 tunnel_up
timeout 120 "$py" -m pytest -q -p no:cacheprovider scripts/hub_operator_flow.py -k "sqlite_count" \
    >"$work/pytest-back.log" 2>&1 || { cat "$work/pytest-back.log"; fail "agent calls after re-enrolment"; }
"${hub[@]}" audit verify >"$work/audit-verify.out" || fail "audit verify: $(cat "$work/audit-verify.out")"
pass "re-enrolled with a new token; agent calls work; $(cat "$work/audit-verify.out")"

if ((!postgres)) && [[ "${CI:-}" == true ]]; then
    fail "the PostgreSQL part was SKIPPED, which CI does not allow (set EWII_TEST_POSTGRES_URL)"
fi
say "hub operator flow: all checks passed"
