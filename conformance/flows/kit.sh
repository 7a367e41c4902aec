# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are for the scripts that source this file
# The real-binary kit: the operator's hub, the customer's adapter and client,
# brought up the way they are run in production, for every judge that needs
# them (conformance/flows/operator-flow.sh, conformance/sdk/run-hub.sh,
# conformance/mcp/run.sh). Source it, then:
#
#   kit_init NAME       work dir (mktemp), umask 077, cleanup at exit (every
#                       process stopped, logs shown on failure)
#   kit_hub             ewii-hub workspace acme / deployment eu / agent bot /
#                       hub-ca, then `serve` on free loopback ports
#   kit_adapter [ARGS]  ewii-adapter init, shop (SQLite sample), crm
#                       (PostgreSQL, when EWII_TEST_POSTGRES_URL is set and
#                       KIT_POSTGRES is not 0), `serve --listen 127.0.0.1:0 ARGS`;
#                       home $work/${KIT_ADAPTER:-adapter}
#   kit_client          ewii-client run, enrolling with the deployment's token
#   kit_wait_tools      until the hub lists the deployment's tools
#   kit_bearer_proxy UPSTREAM CREDENTIAL_FILE
#                       ewii-bearer-proxy in front of UPSTREAM (host:port)
#
#   binaries   EWII_BIN_DIR, default ${CARGO_TARGET_DIR:-$EWII_CACHE/target}/debug
#              (cargo build --workspace --bins)
#   EWII_KEEP_TMP=1   keep the work dir (logs, hub data, client state)

kit_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$kit_dir/../.." && pwd)"
python_dir="$repo/conformance/sdk/python"
# shellcheck source=../toolchain.sh
source "$repo/conformance/toolchain.sh"

WAIT_S="${WAIT_S:-30}" # every wait for a process to come up, enrol or connect

say() { printf '%s\n' "$*"; }
pass() { printf 'PASS  %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*" >&2; exit 1; }

kit_init() {
    umask 077 # tokens, credentials and keys land in the work dir
    export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the clone
    export NO_COLOR=1                 # plain logs, for the tails shown on failure
    bin_dir="${EWII_BIN_DIR:-${CARGO_TARGET_DIR:-$EWII_CACHE/target}/debug}"
    hub_bin="$bin_dir/ewii-hub" adapter_bin="$bin_dir/ewii-adapter"
    client_bin="$bin_dir/ewii-client" proxy_bin="$bin_dir/ewii-bearer-proxy"
    local b
    for b in "$hub_bin" "$adapter_bin" "$client_bin" "$proxy_bin"; do
        [[ -x "$b" ]] || fail "$b not found: run \`cargo build --workspace --bins\` (or set EWII_BIN_DIR)"
    done
    work="$(mktemp -d "${TMPDIR:-/tmp}/ewii-$1.XXXXXX")"
    pids=() # every background process, stopped in kit_cleanup
    pg_db="" pg_url=""
    trap kit_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

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

kit_show_logs() {
    local f
    for f in "$work"/*.log; do
        [[ -s "$f" ]] || continue
        printf '\n--- last lines of %s\n' "${f##*/}" >&2
        tail -n 25 "$f" >&2
    done
}

kit_cleanup() {
    local rc=$?
    local pid
    for pid in "${pids[@]}"; do stop_pid "$pid"; done
    if [[ -n "$pg_db" ]]; then
        PGOPTIONS="-c client_min_messages=warning" psql "$pg_url" -q \
            -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if ((rc != 0)); then kit_show_logs; fi
    if [[ "${EWII_KEEP_TMP:-0}" == 1 ]]; then say "kept $work" >&2; else rm -rf "$work"; fi
    exit "$rc"
}

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
    python3 -c 'import json, sys; print(json.JSONDecoder().raw_decode(sys.stdin.read().lstrip())[0][sys.argv[1]])' "$1"
}

# http_status URL [raw_mcp.py status options]: the HTTP status of an MCP initialize.
http_status() {
    python3 "$python_dir/raw_mcp.py" status "$@"
}

# --- operator ----------------------------------------------------------------
kit_hub() {
    say "== operator: ewii-hub (data: fresh SQLite store, generated master key)"
    hub=("$hub_bin" --data "$work/hub")
    unset EWII_HUB_MASTER_KEY EWII_HUB_DATABASE_URL EWII_HUB_DATA

    "${hub[@]}" --json workspace create acme >"$work/workspace.json"
    [[ "$(json_field name <"$work/workspace.json")" == acme ]] || fail "workspace create: $(cat "$work/workspace.json")"
    [[ -s "$work/hub/master.key" ]] || fail "workspace create did not generate $work/hub/master.key"
    pass "ewii-hub workspace create acme (master.key generated)"

    "${hub[@]}" --json deployment create --workspace acme eu >"$work/deployment.json"
    json_field enrolment_token <"$work/deployment.json" >"$work/enrolment-token"
    spiffe_id="$(json_field spiffe_id <"$work/deployment.json")"
    [[ "$(wc -c <"$work/enrolment-token")" -gt 16 ]] \
        || fail "deployment create printed no usable token: $(cat "$work/deployment.json")"
    pass "ewii-hub deployment create --workspace acme eu ($spiffe_id, single-use token)"

    "${hub[@]}" --json agent create --workspace acme bot >"$work/agent.json"
    agent_credential="$work/agent-credential"
    json_field credential <"$work/agent.json" >"$agent_credential"
    grep -q '^ewii_agent_' "$agent_credential" || fail "agent create printed no credential: $(cat "$work/agent.json")"
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
    hub_quic="$(json_field quic <"$work/hub-serve.out")"
    hub_http="$(json_field http <"$work/hub-serve.out")"
    hub_mcp_url="$(json_field mcp_url <"$work/hub-serve.out")"
    pass "ewii-hub serve: QUIC $hub_quic, agents at $hub_mcp_url"
}

# --- customer: adapter -------------------------------------------------------
kit_adapter() {
    local name="${KIT_ADAPTER:-adapter}"
    say "== customer: ewii-adapter $name (the deployment's token is the customer's secret)"
    adapter=("$adapter_bin" --home "$work/$name" --enrollment-token-file "$work/enrolment-token")
    python3 - "$work/$name-shop.db" "$python_dir" <<'EOF'
import sqlite3, sys
sys.path.insert(0, sys.argv[2])
from sample_data import customers_sql
with sqlite3.connect(sys.argv[1]) as conn:
    conn.executescript(customers_sql())
conn.close()
EOF
    "${adapter[@]}" init --workspace-id acme >"$work/$name-cli.log" 2>&1 || fail "ewii-adapter init"
    "${adapter[@]}" add-database shop --driver sqlite --url "sqlite://$work/$name-shop.db" >>"$work/$name-cli.log" 2>&1 \
        || fail "ewii-adapter add-database shop"
    pass "ewii-adapter init --workspace-id acme; add-database shop (SQLite, customers: 10 rows)"
    adapter_credential="$("${adapter[@]}" local-credential 2>>"$work/$name-cli.log")" \
        || fail "ewii-adapter local-credential"
    [[ "$adapter_credential" == "$work/$name/local-credential" ]] \
        || fail "ewii-adapter local-credential printed '$adapter_credential'"
    [[ "$(stat -c %a "$adapter_credential")" == 600 ]] || fail "local-credential is mode $(stat -c %a "$adapter_credential")"
    pass "ewii-adapter local-credential: $adapter_credential (0600, made by init)"

    postgres=0
    if [[ -n "${EWII_TEST_POSTGRES_URL:-}" && "${KIT_POSTGRES:-1}" != 0 ]]; then
        command -v psql >/dev/null || fail "psql not found (scripts/test-databases.sh installs PostgreSQL)"
        pg_url="$EWII_TEST_POSTGRES_URL"
        pg_db="ewii_kit_$$"
        PGOPTIONS="-c client_min_messages=warning" psql "$pg_url" -q -v ON_ERROR_STOP=1 \
            -c "DROP DATABASE IF EXISTS $pg_db" -c "CREATE DATABASE $pg_db" >/dev/null \
            || fail "cannot create the database $pg_db with EWII_TEST_POSTGRES_URL"
        python3 "$python_dir/sample_data.py" accounts | psql "${pg_url%/*}/$pg_db" -q -v ON_ERROR_STOP=1 >/dev/null \
            || fail "cannot seed the database $pg_db"
        # As a customer would: the URL without the password, the password on stdin.
        { read -r pg_user; read -r pg_pass; read -r pg_hostport; } < <(python3 -c '
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(u.unquote(p.username or ""), u.unquote(p.password or ""), p.netloc.rpartition("@")[2], sep="\n")' "$pg_url")
        printf '%s\n' "$pg_pass" | "${adapter[@]}" add-database crm --driver postgres \
            --url "postgres://$pg_user@$pg_hostport/$pg_db" --password-stdin >>"$work/$name-cli.log" 2>&1 \
            || fail "ewii-adapter add-database crm"
        postgres=1
        pass "ewii-adapter add-database crm (PostgreSQL $pg_hostport/$pg_db, password on stdin)"
    elif [[ "${KIT_POSTGRES:-1}" != 0 ]]; then
        say "SKIPPED: PostgreSQL part (EWII_TEST_POSTGRES_URL unset; scripts/test-databases.sh start provides it)"
    fi

    "${adapter[@]}" serve --listen 127.0.0.1:0 "$@" >"$work/$name-serve.out" 2>"$work/$name-serve.log" &
    adapter_pid=$!
    pids+=("$adapter_pid")
    wait_for "ewii-adapter serve" "$adapter_pid" grep -Eq 'http://127\.0\.0\.1:[0-9]+/mcp' "$work/$name-serve.out"
    adapter_addr="$(grep -Eo '127\.0\.0\.1:[0-9]+' "$work/$name-serve.out" | head -n 1)"
    adapter_mcp_url="http://$adapter_addr/mcp"
    pass "ewii-adapter serve on $adapter_addr"
}

# --- customer: client --------------------------------------------------------
# events N KIND: at least N events of KIND in the first client's connection log.
events() {
    local n
    n="$(grep -c "\"event\":\"$2\"" "$work/client/connections.jsonl" 2>/dev/null)" || true
    ((${n:-0} >= $1))
}

kit_client() {
    say "== customer: ewii-client enrols with the token and connects"
    client_args=(--hub "$hub_quic" --hub-ca "$work/hub-ca.pem" --allow "tcp:$adapter_addr"
        --adapter-credential-file "$adapter_credential" --enrollment-token-file "$work/enrolment-token")
    unset EWII_ENROLLMENT_TOKEN EWII_SVID EWII_SVID_KEY EWII_STATE EWII_HUB EWII_HUB_CA EWII_ALLOW \
        EWII_ADAPTER_CREDENTIAL EWII_ADAPTER_CREDENTIAL_FILE
    "$client_bin" run "${client_args[@]}" --state "$work/client" >"$work/client.log" 2>&1 &
    client_pid=$!
    pids+=("$client_pid")
    wait_for "ewii-client enrolling and bringing the tunnel up" "$client_pid" events 1 tunnel_up
    events 1 enrolled || fail "no 'enrolled' event in connections.jsonl"
    pass "ewii-client enrolled ($spiffe_id) and the tunnel is up"
}

# kit_wait_tools: until the agent's tools/list holds every database's query tool.
kit_wait_tools() {
    local tools=(eu_shop_query)
    ((postgres)) && tools+=(eu_crm_query)
    python3 "$python_dir/raw_mcp.py" wait-tools "$hub_mcp_url" --bearer-file "$agent_credential" \
        --timeout "$WAIT_S" "${tools[@]}" || fail "the hub did not list ${tools[*]}"
    pass "the hub lists ${tools[*]} to the agent"
}

# kit_bearer_proxy UPSTREAM CREDENTIAL_FILE [PORT]: starts ewii-bearer-proxy, sets proxy_url.
kit_bearer_proxy() {
    local log="$work/bearer-proxy-${1//[^0-9]/}"
    "$proxy_bin" --listen "127.0.0.1:${3:-0}" --upstream "$1" --credential-file "$2" \
        >"$log.out" 2>"$log.log" &
    local pid=$!
    pids+=("$pid")
    wait_for "ewii-bearer-proxy in front of $1" "$pid" grep -q '^listening http://' "$log.out"
    proxy_url="$(sed -n 's|^listening \(http://.*\)$|\1/mcp|p' "$log.out")"
}
