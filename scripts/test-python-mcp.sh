#!/usr/bin/env bash
# Runs tests/python against ewii-adapter with the official Python MCP SDK.
#
#   EWII_ADAPTER_BIN   adapter binary (default: $CARGO_TARGET_DIR or ~/.cache/ewii/target, /debug/ewii-adapter)
#   EWII_CACHE         where the venv lives (default: ~/.cache/ewii)
#   EWII_MCP_VERSION   SDK version to test with (default: the pin below)
#   extra arguments    passed to pytest (e.g. -k query, -x)
set -euo pipefail

# 1.30.0: newest 1.x SDK, speaks MCP 2025-11-25 with the initialize handshake that
# deployed clients use. The tests also pass the 2.x API (EWII_MCP_VERSION=2.3.0).
MCP_VERSION="${EWII_MCP_VERSION:-1.30.0}"
PYTEST_VERSION="9.2.0"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${EWII_CACHE:-$HOME/.cache/ewii}"
venv="$cache/venv-mcp"

export EWII_ADAPTER_BIN="${EWII_ADAPTER_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/ewii/target}/debug/ewii-adapter}"
if [[ ! -x "$EWII_ADAPTER_BIN" ]]; then
    echo "ewii-adapter not found at $EWII_ADAPTER_BIN (build it or set EWII_ADAPTER_BIN)" >&2
    exit 1
fi

if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p "$cache"
    python3 -m venv "$venv"
fi
# pip is a no-op (no network) when the pinned versions are already installed.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "mcp==$MCP_VERSION" "pytest==$PYTEST_VERSION"

cd "$repo"
# -p no:cacheprovider: keep .pytest_cache out of the work tree.
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python "$@"
