#!/usr/bin/env bash
# Installs what the OAuth tests need (Node 22 and oidc-provider, pinned in
# conformance/toolchain.sh) into the cache and prints two lines the tests
# read: `node PATH` and `modules DIR`. Needs no network once installed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../toolchain.sh
source "$here/../toolchain.sh"
bin="$(node22)"
dir="$(oidc_provider)"
echo "node $bin/node"
echo "modules $dir/node_modules"
# The official Python SDK (1.x line, httpx) for the discovery test.
echo "python $(python_sdk "$EWII_MCP_PY_1")"
