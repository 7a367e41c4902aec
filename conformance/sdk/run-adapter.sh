#!/usr/bin/env bash
# The official Python MCP SDK against `ewii-adapter serve`
# (conformance/sdk/python/test_adapter.py), once per SDK line: the 1.x line
# deployed clients use and the current 2.x (pins: conformance/toolchain.sh).
#
#   EWII_ADAPTER_BIN    adapter binary (default: ${CARGO_TARGET_DIR:-~/.cache/ewii/target}/debug/ewii-adapter)
#   EWII_CACHE          where the venvs live (default: ~/.cache/ewii)
#   EWII_MCP_VERSIONS   SDK versions to test with, space-separated (default: both pins)
#   EWII_TEST_POSTGRES_URL, EWII_TEST_MARIADB_URL (scripts/test-databases.sh): a seeded
#                       database on each is attached next to SQLite and every test runs on it too
#   extra arguments     passed to pytest (e.g. -k query, -x)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../toolchain.sh
source "$here/../toolchain.sh"
export PYTHONDONTWRITEBYTECODE=1
python_dir="$here/python"

export EWII_ADAPTER_BIN="${EWII_ADAPTER_BIN:-${CARGO_TARGET_DIR:-$EWII_CACHE/target}/debug/ewii-adapter}"
if [[ ! -x "$EWII_ADAPTER_BIN" ]]; then
    echo "ewii-adapter not found at $EWII_ADAPTER_BIN (build it or set EWII_ADAPTER_BIN)" >&2
    exit 1
fi
read -r -a versions <<<"${EWII_MCP_VERSIONS:-$EWII_MCP_PY_1 $EWII_MCP_PY_2}"
pys=()
for version in "${versions[@]}"; do pys+=("$(python_sdk "$version")"); done

# Real servers started by scripts/test-databases.sh: seed a dedicated database
# in each with the test's customers table and attach it next to SQLite.
seed="$(python3 "$python_dir/sample_data.py" customers)"
extra=()
if [[ -n "${EWII_TEST_POSTGRES_URL:-}" ]]; then
    pg_base="${EWII_TEST_POSTGRES_URL%/*}"
    PGOPTIONS="-c client_min_messages=warning" psql "$EWII_TEST_POSTGRES_URL" -q -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS ewii_py" -c "CREATE DATABASE ewii_py"
    psql "$pg_base/ewii_py" -q -v ON_ERROR_STOP=1 <<<"$seed"
    extra+=("[\"pg\", \"postgres\", \"$pg_base/ewii_py\", \"\$n\"]")
fi
if [[ -n "${EWII_TEST_MARIADB_URL:-}" && "${EWII_PY_MARIADB:-1}" == 1 ]]; then
    read -r m_user m_pass m_host m_port < <(python3 -c '
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

summary=()
for i in "${!versions[@]}"; do
    echo "== official Python MCP SDK ${versions[$i]} against ewii-adapter"
    # -p no:cacheprovider: keep .pytest_cache out of the work tree.
    rc=0
    "${pys[$i]}" -m pytest -q -p no:cacheprovider "$python_dir/test_adapter.py" "$@" | tee "${TMPDIR:-/tmp}/ewii-sdk-adapter.$$" || rc=$?
    summary+=("python mcp ${versions[$i]} vs ewii-adapter: $(grep -E '^[0-9]+ (passed|failed)' "${TMPDIR:-/tmp}/ewii-sdk-adapter.$$" | tail -n 1)")
    rm -f "${TMPDIR:-/tmp}/ewii-sdk-adapter.$$"
    ((rc == 0)) || { printf '%s\n' "${summary[@]}"; exit "$rc"; }
done
printf '%s\n' "${summary[@]}"
