#!/usr/bin/env bash
# MCP tools/call latency from one keep-alive HTTP/1.1 client (no new TCP
# connection per call), against ewii-adapter directly and against the hub
# through the tunnel, with the real binaries of the kit (conformance/flows/kit.sh)
# and the SQLite sample. Prints one line per target (see BENCHMARKS.md).
#
#   CALLS   calls per target (default 200)
#   EWII_BIN_DIR, EWII_CACHE, EWII_KEEP_TMP: as for conformance/flows/kit.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export KIT_POSTGRES=0
# shellcheck source=../flows/kit.sh
source "$here/../flows/kit.sh"
calls="${CALLS:-200}"

kit_init mcp-keepalive
kit_hub >/dev/null
kit_adapter >/dev/null
kit_client >/dev/null
kit_wait_tools >/dev/null
# The direct calls go to the same adapter the client forwards the hub's calls to.
direct_credential="$adapter_credential"
direct_port="${adapter_addr##*:}"
printf 'adapter direct:        '
python3 "$here/mcp_keepalive.py" "$direct_port" "$direct_credential" "$calls" shop_query
printf 'hub through the tunnel: '
python3 "$here/mcp_keepalive.py" "${hub_http##*:}" "$agent_credential" "$calls" eu_shop_query
