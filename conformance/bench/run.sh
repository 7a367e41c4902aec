#!/usr/bin/env bash
# ewii-bench: Ewii's MCP call path against DBHub and raw PostgreSQL, in one
# run, on release binaries; and the tunnel, audit and idle-tunnel figures.
#
#   bash conformance/bench/run.sh [PART...]     (default: mcp tunnel audit)
#
#   mcp     pgbench SELECT 1 (the floor), DBHub 1.4.0 direct, ewii-adapter
#           direct, agent → hub → QUIC tunnel → client → adapter (durable
#           audit, the hub's default SQLite store), each with wrk keep-alive
#           at 1 and 16 connections and the official Python SDK; the table,
#           the plot and the keep-alive stall check (exit 3 on FAIL)
#   tunnel  bulk throughput through a tunnel (app-layer AEAD) vs raw quinn
#   audit   per-call audit commit cost, SQLite and PostgreSQL stores
#   idle    N idle tunnels on one hub (hub RSS per tunnel) and the reconnect
#           storm after kill -9 and restart (N from IDLE_N, default "100 1000";
#           a separate part: it takes several minutes)
#   replica the cross-replica hop: two hub replicas on one PostgreSQL store,
#           the deployment's tunnel on replica B; the same call through B
#           (local) and through A (A → B over the replica channel), with wrk
#           at 1 and 16 connections: p50, p99, calls/s and the hop's cost
#           (harness/replica.py; a separate part)
#
# Installs what it needs (Debian: wrk, PostgreSQL with pgbench; npm: Node 22
# and @bytebase/dbhub, pinned in conformance/toolchain.sh; the Python SDK
# venv), builds the release binaries into $CARGO_TARGET_DIR (cargo's cache),
# starts a throwaway PostgreSQL with scripts/test-databases.sh (EWII_DB_STATE,
# EWII_PG_PORT, EWII_MARIA_PORT as there) and stops it at the end.
#
#   BENCH_SECONDS   seconds per wrk/pgbench run (default 10)
#   BENCH_OUT       where the results go (default conformance/bench/results)
#   EWII_BIN_DIR    use these binaries instead of building
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
parts=("$@")
((${#parts[@]})) || parts=(mcp tunnel audit)
[[ " ${parts[*]} " == *" all "* ]] && parts=(mcp tunnel audit idle replica)
for p in "${parts[@]}"; do
    [[ "$p" =~ ^(mcp|tunnel|audit|idle|replica)$ ]] || { echo "unknown part '$p' (mcp, tunnel, audit, idle, replica, all)" >&2; exit 2; }
done
wants() { [[ " ${parts[*]} " == *" $1 "* ]]; }
started=$(date +%s)
out="${BENCH_OUT:-$here/results}"
mkdir -p "$out"

# --- what the run needs ----------------------------------------------------------
apt_missing=()
command -v wrk >/dev/null || apt_missing+=(wrk)
command -v pgbench >/dev/null || apt_missing+=(postgresql-client postgresql-contrib)
if ((${#apt_missing[@]})); then
    echo "installing ${apt_missing[*]} (Debian packages)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >&2
fi
# shellcheck source=../toolchain.sh
source "$repo/conformance/toolchain.sh"
node_bin="$(node22)"
npm_pinned "$EWII_CACHE/dbhub-$EWII_DBHUB" @bytebase/dbhub "$EWII_DBHUB"
dbhub_js="$EWII_CACHE/dbhub-$EWII_DBHUB/node_modules/@bytebase/dbhub/dist/index.js"
sdk_python="$(python_sdk "$EWII_MCP_PY_2")"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$EWII_CACHE/target}"
if [[ -z "${EWII_BIN_DIR:-}" ]]; then
    echo "building the release binaries (cargo build --release; cached in $CARGO_TARGET_DIR)" >&2
    (cd "$repo" && cargo build --release --quiet -p ewii-hub -p ewii-adapter -p ewii-client \
        -p ewii-conformance -p ewii-bench --bins) >&2
    export EWII_BIN_DIR="$CARGO_TARGET_DIR/release"
fi

# --- a throwaway PostgreSQL ------------------------------------------------------
# Servers already running on those ports (a developer's) are used and left running.
db_was_running=0
pg_isready -q -h 127.0.0.1 -p "${EWII_PG_PORT:-55432}" 2>/dev/null && db_was_running=1
db_env="$(bash "$repo/scripts/test-databases.sh" start)"
eval "$(sed 's/^/export /' <<<"$db_env")"
db_state="${EWII_DB_STATE:-${TMPDIR:-/tmp}/ewii-test-databases}"
postmaster="$(head -n 1 "$db_state/pg/postmaster.pid")"
pg_version="$(psql "$EWII_TEST_POSTGRES_URL" -tAc 'SHOW server_version')"

export KIT_POSTGRES=1
# shellcheck source=../flows/kit.sh
source "$repo/conformance/flows/kit.sh"
kit_init bench
# The kit's own cleanup (processes, its database), then the servers.
# shellcheck disable=SC2317 # run by the EXIT trap
bench_cleanup() {
    local rc=$?
    trap - EXIT
    # Exit 3 (a FAIL of the stall check) is a result, not a crash: no log dump.
    local kit_rc="$rc"
    ((rc == 3)) && kit_rc=0
    (set +e; (exit "$kit_rc"); kit_cleanup) || true
    ((db_was_running)) || bash "$repo/scripts/test-databases.sh" stop >/dev/null 2>&1 || true
    exit "$rc"
}
trap bench_cleanup EXIT

wrk_version="$(wrk -v 2>&1 | head -n 1 | cut -d' ' -f2)" || true # wrk -v exits 1
versions="ewii $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'), $(rustc --version | cut -d' ' -f1-2), \
DBHub $EWII_DBHUB on Node $("$node_bin/node" --version), PostgreSQL $pg_version, wrk $wrk_version, \
Python SDK mcp $EWII_MCP_PY_2."

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

if wants mcp; then
    kit_hub >/dev/null
    kit_adapter >/dev/null
    kit_client >/dev/null
    kit_wait_tools >/dev/null
    dbhub_port="$(free_port)"
    # The same database the adapter serves (the kit's, with its sample table).
    "$node_bin/node" "$dbhub_js" --transport http --host 127.0.0.1 --port "$dbhub_port" \
        --dsn "postgres://ewii:ewii@127.0.0.1:$EWII_PG_PORT/$pg_db?sslmode=disable" \
        >"$work/dbhub.out" 2>"$work/dbhub.log" &
    dbhub_pid=$!
    pids+=("$dbhub_pid")
    wait_for "DBHub on port $dbhub_port" "$dbhub_pid" curl -fsS "http://127.0.0.1:$dbhub_port/healthz"
    say "== DBHub $EWII_DBHUB on 127.0.0.1:$dbhub_port (pid $dbhub_pid), adapter pid $adapter_pid, hub pid $hub_pid, client pid $client_pid"

    BENCH_PLAN="$work/plan.json" SECONDS_PER_RUN="${BENCH_SECONDS:-10}" OUT="$out" SDK_PY="$sdk_python" \
        VERSIONS="$versions" STARTED="$started" python3 - <<EOF
import json, os
cred = lambda p: open(p).read().strip()
plan = {
    "seconds": int(os.environ["SECONDS_PER_RUN"]), "connections": [1, 16], "sdk_calls": 200,
    "sdk_python": os.environ["SDK_PY"], "sdk_version": "$EWII_MCP_PY_2", "out_dir": os.environ["OUT"],
    "versions": os.environ["VERSIONS"], "started": int(os.environ["STARTED"]),
    "pgbench": {"url": "${EWII_TEST_POSTGRES_URL%/*}/$pg_db", "postmaster": $postmaster},
    "targets": [
        {"key": "dbhub", "name": "DBHub $EWII_DBHUB direct", "url": "http://127.0.0.1:$dbhub_port/mcp",
         "tool": "execute_sql", "bearer": "", "pids": [$dbhub_pid]},
        {"key": "adapter", "name": "ewii-adapter direct", "url": "$adapter_mcp_url",
         "tool": "crm_query", "bearer": cred("$adapter_credential"), "pids": [$adapter_pid]},
        {"key": "whole", "name": "agent → hub → tunnel → client → adapter", "url": "$hub_mcp_url",
         "tool": "eu_crm_query", "bearer": cred("$agent_credential"),
         "pids": [$hub_pid, $client_pid, $adapter_pid]},
    ],
}
json.dump(plan, open(os.environ["BENCH_PLAN"], "w"))
EOF
    mcp_rc=0
    python3 "$here/harness/measure.py" "$work/plan.json" || mcp_rc=$?
    ((mcp_rc == 0 || mcp_rc == 3)) || fail "the MCP call benchmark failed (exit $mcp_rc)"
fi

# The Rust parts: one binary, one sub-command each (conformance/bench/src/bin/ewii-bench).
bench_bin="$EWII_BIN_DIR/ewii-bench"
if wants tunnel; then
    say "== tunnel bulk throughput: app-layer AEAD vs raw quinn"
    "$bench_bin" tunnel --out "$out/tunnel.md"
fi
if wants audit; then
    say "== audit commit cost per call: SQLite and PostgreSQL stores"
    audit_db=ewii_bench_audit_$$
    psql "$EWII_TEST_POSTGRES_ADMIN_URL" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $audit_db OWNER ewii" >/dev/null
    "$bench_bin" audit --postgres "${EWII_TEST_POSTGRES_URL%/*}/$audit_db" --out "$out/audit.md"
    psql "$EWII_TEST_POSTGRES_ADMIN_URL" -q -c "DROP DATABASE $audit_db WITH (FORCE)" >/dev/null 2>&1 || true
fi
if wants idle; then
    say "== idle tunnels and the reconnect storm"
    "$bench_bin" idle --hub "$hub_bin" --adapter "$adapter_bin" --counts "${IDLE_N:-100 1000}" --out "$out/idle.md"
fi
if wants replica; then
    say "== the cross-replica hop: agent → replica A → replica B → tunnel, against agent → replica B → tunnel"
    replica_db=ewii_bench_replica_$$
    psql "$EWII_TEST_POSTGRES_ADMIN_URL" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $replica_db OWNER ewii" >/dev/null
    EWII_HUB_MASTER_KEY="$(head -c 32 /dev/urandom | base64)"
    export EWII_HUB_MASTER_KEY
    rhub=("$hub_bin" --database-url "${EWII_TEST_POSTGRES_URL%/*}/$replica_db")
    "${rhub[@]}" --json workspace create acme >/dev/null
    "${rhub[@]}" --json deployment create --workspace acme eu | json_field enrolment_token >"$work/enrolment-token"
    "${rhub[@]}" --json agent create --workspace acme bot | json_field credential >"$work/replica-agent"
    "${rhub[@]}" hub-ca >"$work/replica-hub-ca.pem"
    replica_pids=()
    for r in a b; do
        "${rhub[@]}" serve --quic 127.0.0.1:0 --http 127.0.0.1:0 --name 127.0.0.1 \
            --replica-listen "127.0.0.1:$(free_port)" --json \
            >"$work/replica-$r.out" 2>"$work/replica-$r.log" &
        pids+=($!)
        replica_pids+=($!)
        wait_for "replica $r" "$!" grep -q '"mcp_url"' "$work/replica-$r.out"
    done
    KIT_POSTGRES=0 KIT_ADAPTER=replica-adapter kit_adapter >/dev/null
    "$client_bin" run --hub "$(json_field quic <"$work/replica-b.out")" --hub-ca "$work/replica-hub-ca.pem" \
        --allow "tcp:$adapter_addr" --adapter-credential-file "$adapter_credential" \
        --enrollment-token-file "$work/enrolment-token" --state "$work/replica-client" \
        >"$work/replica-client.log" 2>&1 &
    replica_client_pid=$!
    pids+=("$replica_client_pid")
    python3 "$python_dir/raw_mcp.py" wait-tools "$(json_field mcp_url <"$work/replica-a.out")" \
        --bearer-file "$work/replica-agent" --timeout "$WAIT_S" eu_shop_query \
        || fail "replica A never listed the tools of the deployment on replica B"
    PLAN="$work/replica-plan.json" SECONDS_PER_RUN="${BENCH_SECONDS:-10}" OUT="$out/replica.md" \
        VERSIONS="$versions" BEARER_FILE="$work/replica-agent" \
        LOCAL_URL="$(json_field mcp_url <"$work/replica-b.out")" CROSS_URL="$(json_field mcp_url <"$work/replica-a.out")" \
        LOCAL_PIDS="${replica_pids[1]} $replica_client_pid $adapter_pid" \
        CROSS_PIDS="${replica_pids[0]} ${replica_pids[1]} $replica_client_pid $adapter_pid" python3 - <<'EOF'
import json, os
e = os.environ
pids = lambda k: [int(p) for p in e[k].split()]
plan = {
    "seconds": int(e["SECONDS_PER_RUN"]), "connections": [1, 16], "out": e["OUT"], "versions": e["VERSIONS"],
    "tool": "eu_shop_query", "bearer": open(e["BEARER_FILE"]).read().strip(),
    "local": {"url": e["LOCAL_URL"], "pids": pids("LOCAL_PIDS")},
    "cross": {"url": e["CROSS_URL"], "pids": pids("CROSS_PIDS")},
}
json.dump(plan, open(e["PLAN"], "w"))
EOF
    python3 "$here/harness/replica.py" "$work/replica-plan.json" || fail "the cross-replica benchmark failed"
    for pid in "$replica_client_pid" "${replica_pids[@]}"; do stop_pid "$pid"; done
    psql "$EWII_TEST_POSTGRES_ADMIN_URL" -q -c "DROP DATABASE $replica_db WITH (FORCE)" >/dev/null 2>&1 || true
    unset EWII_HUB_MASTER_KEY
fi
say "== ewii-bench done in $(($(date +%s) - started)) s; results in $out"
exit "${mcp_rc:-0}"
