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

# Real servers started by scripts/test-databases.sh: seed a dedicated database
# in each with the test's customers table and attach it next to SQLite.
seed="$("$venv/bin/python" -c 'import sys; sys.path.insert(0, "tests/python"); import test_adapter_mcp as t; print(t.SEED_SQL)')"
extra=()
if [[ -n "${EWII_TEST_POSTGRES_URL:-}" ]]; then
    pg_base="${EWII_TEST_POSTGRES_URL%/*}"
    PGOPTIONS="-c client_min_messages=warning" psql "$EWII_TEST_POSTGRES_URL" -q -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS ewii_py" -c "CREATE DATABASE ewii_py"
    psql "$pg_base/ewii_py" -q -v ON_ERROR_STOP=1 <<<"$seed"
    extra+=("[\"pg\", \"postgres\", \"$pg_base/ewii_py\", \"\$n\"]")
fi
if [[ -n "${EWII_TEST_MARIADB_URL:-}" && "${EWII_PY_MARIADB:-1}" == 1 ]]; then
    read -r m_user m_pass m_host m_port < <("$venv/bin/python" -c '
import sys, urllib.parse as u
p = u.urlparse(sys.argv[1]); print(p.username, p.password, p.hostname, p.port)' "$EWII_TEST_MARIADB_URL")
    maria=(mariadb --protocol=tcp -h "$m_host" -P "$m_port" -u "$m_user" "-p$m_pass")
    "${maria[@]}" -e "DROP DATABASE IF EXISTS ewii_py; CREATE DATABASE ewii_py"
    "${maria[@]}" ewii_py <<<"$seed"
    extra+=("[\"maria\", \"mariadb\", \"${EWII_TEST_MARIADB_URL%/*}/ewii_py\", \"?\"]")
fi
if ((${#extra[@]})); then
    EWII_PY_EXTRA_DATABASES="[$(IFS=,; echo "${extra[*]}")]"
    export EWII_PY_EXTRA_DATABASES
    echo "also testing: $EWII_PY_EXTRA_DATABASES" | sed -E 's#://[^:]+:[^@]+@#://***@#g'
fi

# -p no:cacheprovider: keep .pytest_cache out of the work tree.
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python "$@"
