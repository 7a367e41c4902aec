#!/usr/bin/env bash
# The official MCP conformance suite (@modelcontextprotocol/conformance) against
# two targets, at two suite versions (pins: conformance/toolchain.sh):
#
#   targets   adapter  `ewii-adapter serve` with the SQLite sample
#             hub      `ewii-hub serve` reaching that adapter through the tunnel:
#                      the real-binary kit (conformance/flows/kit.sh), ewii-client
#                      enrolled with the deployment's token
#   runs      $EWII_SUITE_LATEST   --suite all (npm `latest`: every server scenario)
#             $EWII_SUITE_NEXT     --requirements $EWII_SUITE_REQUIREMENTS (the frozen
#                                  requirement set, at that revision's wire) and
#                                  --suite all (every server scenario it has)
#
# The suite cannot send headers, and both targets refuse a caller without a
# bearer (the adapter its local credential, the hub an agent's credential). The
# suite talks to ewii-bearer-proxy on loopback, which adds the bearer and
# forwards everything else unchanged (Host, Origin, session headers, SSE); the
# script checks that each target still answers 401 without it.
#
# conformance/mcp/judge.py compares each run with baseline-<version>.txt: the
# scenarios that need fixtures a database tool server does not have are
# expected failures there, with the reason. Any other failure, or a baseline
# line that passes, fails the script. One summary line per run and target.
#
#   EWII_CACHE, EWII_BIN_DIR, EWII_KEEP_TMP: as for conformance/flows/kit.sh
#   EWII_CONFORMANCE_MARKDOWN=FILE  also write the verdicts as Markdown tables
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../flows/kit.sh
source "$here/../flows/kit.sh"

node_bin="$(node22)"
# .bin first on PATH: the suite's `#!/usr/bin/env node` then picks Node 22.
export PATH="$node_bin:$PATH"
latest_cli="$(suite "$EWII_SUITE_LATEST")"
next_cli="$(suite "$EWII_SUITE_NEXT")"
started=$SECONDS

kit_init mcp-conformance
export KIT_POSTGRES=0 # the targets serve the SQLite sample
kit_hub

# --- target: the adapter alone ------------------------------------------------
# The suite's DNS-rebinding scenario sends the URL's own origin as a valid
# Origin: the adapter allows exactly the proxy's, so the proxy's port comes first.
proxy_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
KIT_ADAPTER=adapter-direct kit_adapter --allowed-origin "http://127.0.0.1:$proxy_port"
direct_status="$(http_status "$adapter_mcp_url")"
[[ "$direct_status" == 401 ]] || fail "ewii-adapter answered $direct_status without its local credential (expected 401)"
kit_bearer_proxy "$adapter_addr" "$adapter_credential" "$proxy_port"
adapter_url="$proxy_url"
[[ "$(http_status "$adapter_url")" == 200 ]] || fail "ewii-adapter refused the suite's initialize through the proxy"
pass "adapter target: $adapter_url (ewii-bearer-proxy, local credential) -> $adapter_addr, which answers 401 without it"

# --- target: the hub through the tunnel ---------------------------------------
kit_adapter
kit_client
kit_wait_tools
status="$(http_status "$hub_mcp_url")"
[[ "$status" == 401 ]] || fail "ewii-hub answered $status without a bearer (expected 401)"
status="$(http_status "$hub_mcp_url" -H "Authorization: Bearer ewii_agent_not-a-real-credential")"
[[ "$status" == 401 ]] || fail "ewii-hub answered $status to a wrong bearer (expected 401)"
kit_bearer_proxy "$hub_http" "$agent_credential"
hub_url="$proxy_url"
[[ "$(http_status "$hub_url")" == 200 ]] || fail "ewii-hub refused the suite's initialize through the proxy"
pass "hub target: $hub_url (ewii-bearer-proxy, agent credential) -> $hub_mcp_url, which answers 401 without it"

# --- the runs -----------------------------------------------------------------
# run_suite CLI VERSION LABEL LIST_ARGS -- SERVER_ARGS: both targets; sets the judge's --run args.
declare -A judge_runs=([adapter-"$EWII_SUITE_LATEST"]="" [hub-"$EWII_SUITE_LATEST"]=""
    [adapter-"$EWII_SUITE_NEXT"]="" [hub-"$EWII_SUITE_NEXT"]="")
run_suite() {
    local cli="$1" version="$2" label="$3"; shift 3
    local list_args=() server_args=()
    while [[ "$1" != -- ]]; do list_args+=("$1"); shift; done
    shift
    server_args=("$@")
    local slug="${version}${label//[^a-z0-9.-]/_}"
    "$cli" list --server "${list_args[@]}" >"$work/list-$slug.txt" 2>&1 \
        || fail "conformance $version list ${list_args[*]}: $(cat "$work/list-$slug.txt")"
    local target url
    for target in adapter hub; do
        url="$adapter_url"
        [[ "$target" == hub ]] && url="$hub_url"
        say "== conformance $version $label against the $target ($url)"
        local out="$work/results/$slug/$target"
        mkdir -p "$out"
        # The exit status says "some scenario failed"; the judge decides against the baseline.
        timeout 900 "$cli" server --url "$url" "${server_args[@]}" -o "$out" >"$work/suite-$slug-$target.txt" 2>&1 || true
        judge_runs[$target-$version]+=" --run=$label:$out:$work/list-$slug.txt"
    done
}
run_suite "$latest_cli" "$EWII_SUITE_LATEST" --suite=all -- --suite all
run_suite "$next_cli" "$EWII_SUITE_NEXT" "--requirements=$EWII_SUITE_REQUIREMENTS" \
    --requirements "$EWII_SUITE_REQUIREMENTS" -- --requirements "$EWII_SUITE_REQUIREMENTS"
run_suite "$next_cli" "$EWII_SUITE_NEXT" --suite=all -- --suite all

# --- the verdicts -------------------------------------------------------------
markdown=()
[[ -n "${EWII_CONFORMANCE_MARKDOWN:-}" ]] && markdown=(--markdown "$EWII_CONFORMANCE_MARKDOWN")
summaries=()
unexpected=0
for version in "$EWII_SUITE_LATEST" "$EWII_SUITE_NEXT"; do
    for target in adapter hub; do
        say "== verdicts: conformance $version vs $target (baseline-$version.txt)"
        # shellcheck disable=SC2086 # the --run arguments are words by construction
        if ! python3 "$here/judge.py" --version "$version" --target "$target" --baseline "$here/baseline-$version.txt" \
            ${judge_runs[$target-$version]} "${markdown[@]}" | tee "$work/verdict.txt"; then
            unexpected=1
        fi
        while IFS= read -r line; do summaries+=("$line"); done < <(grep '^conformance ' "$work/verdict.txt")
    done
done
say "== official MCP conformance suite ($((SECONDS - started)) s)"
printf '%s\n' "${summaries[@]}"
((unexpected == 0)) || fail "unexpected conformance results (FAIL/XPASS/STALE lines above; the suite's output is in the results dir, EWII_KEEP_TMP=1 keeps it)"
