#!/usr/bin/env bash
# The project's whole test suite, as CI runs it. Installs what it needs (Python
# venvs with the official MCP SDKs, Node 22, the MCP conformance suite, the
# TypeScript SDK: pins in conformance/toolchain.sh) into a cache outside the
# clone, so reruns are incremental and need no network.
set -euo pipefail
cd "$(dirname "$0")/.."

export EWII_CACHE="${EWII_CACHE:-$HOME/.cache/ewii}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$EWII_CACHE/target}"
export EWII_ADAPTER_BIN="$CARGO_TARGET_DIR/debug/ewii-adapter"
mkdir -p "$EWII_CACHE"

timings=()
step_name="" step_start=$SECONDS
step() {
    [[ -n "$step_name" ]] && timings+=("$(printf '%5ss  %s' $((SECONDS - step_start)) "$step_name")")
    step_name="$1" step_start=$SECONDS
    printf '\n==> %s\n' "$*"
}

for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    step "installing the Rust component $component"
    rustup component add "$component"
  fi
done

step "throwaway PostgreSQL and MariaDB on 127.0.0.1 (scripts/test-databases.sh)"
db_env="$(bash scripts/test-databases.sh start)"
trap 'bash scripts/test-databases.sh stop >/dev/null 2>&1 || true' EXIT
while IFS= read -r line; do export "${line?}"; done <<<"$db_env"

step "nx-27017, a MongoDB wire-compatible stand-in (NOT MongoDB), pinned, into a venv (scripts/test-mongodb.sh install)"
bash scripts/test-mongodb.sh install
# The MongoDB driver's tests start their own stand-in; here it must not be skipped.
export EWII_REQUIRE_NX27017=1

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Before the tests: the suites in conformance/tests run the real binaries, and
# `cargo test` builds only the binaries of the crates whose tests it runs.
step "the binaries (cargo build --workspace --bins): ewii-hub, ewii-adapter, ewii-client, ewii-bearer-proxy, ewii"
cargo build --workspace --bins --locked

step "cargo test (unit, driver test kit on SQLite/PostgreSQL/MariaDB, adapter CLI and MCP, QUIC binding, the end-to-end suites of conformance/tests, demo)"
cargo test --workspace --locked

step "driver test kit on SQL Server and Oracle (only with EWII_TEST_MSSQL_URL / EWII_TEST_ORACLE_URL)"
for pair in mssql:EWII_TEST_MSSQL_URL oracle:EWII_TEST_ORACLE_URL; do
    driver=${pair%%:*} var=${pair#*:}
    if [ -n "${!var:-}" ]; then
        cargo test --locked -p "ewii-driver-$driver" --test kit -- --ignored
    else
        echo "SKIPPED (not passed): $var is not set; no $driver server can run on this machine, so its driver test kit did not run"
    fi
done
step "MongoDB document kit: against the nx-27017 stand-in (a wire-compatible stand-in, NOT MongoDB), and against real MongoDB only if EWII_TEST_MONGODB_URL is set"
echo "nx-27017 is a wire-compatible stand-in, not MongoDB; checks it cannot show are listed as SKIPPED below."
mongo_out="$(cargo test -p ewii-driver-mongodb --locked -- --nocapture --test-threads=1 2>&1)" || { echo "$mongo_out"; exit 1; }
grep -E '^(test |SKIPPED|using nx-27017|document kit|driver test kit)' <<<"$mongo_out" || true
if [[ -n "${EWII_TEST_MONGODB_URL:-}" ]]; then
  cargo test --locked -p ewii-driver-mongodb --test kit -- --ignored --test-threads=1
else
  echo "SKIPPED (not passed): the MongoDB kit against real MongoDB (3 tests, ignored); set EWII_TEST_MONGODB_URL=mongodb://user:pass@host:27017/ to run it"
fi

step "the wire's fuzz targets compile, on ewii-wire alone (running them needs nightly: docs/protocol.md, Fuzzing)"
(cd tunnel/fuzz && cargo check --locked --bins)

step "official Python MCP SDK, 1.x and 2.x, against ewii-adapter (conformance/sdk/run-adapter.sh)"
bash conformance/sdk/run-adapter.sh

step "operator and customer flow: ewii-hub, ewii-adapter, ewii-client over QUIC, the Python SDK as the agent (conformance/flows/operator-flow.sh)"
bash conformance/flows/operator-flow.sh

step "official SDK clients through the hub: Python 2.x and 1.x, TypeScript (conformance/sdk/run-hub.sh)"
bash conformance/sdk/run-hub.sh

step "the official Python SDK through the hub on a MongoDB database, served by the nx-27017 stand-in (NOT MongoDB) (conformance/sdk/run-hub-mongodb.sh)"
bash conformance/sdk/run-hub-mongodb.sh

step "official MCP conformance suite, npm latest and the 2026-07-28 requirement set, against ewii-adapter and the hub through the tunnel (conformance/mcp/run.sh)"
bash conformance/mcp/run.sh

step "the README's demo: cargo run --release -- demo --once"
cargo run --release --locked -- demo --once

step "images: build from scratch, check, push to a throwaway registry, sign and verify (cosign format), run the kit from the unpacked images with the hub's /mcp over HTTPS (scripts/test-images.sh)"
bash scripts/test-images.sh

step "done"
printf '\nStage times:\n'
printf '%s\n' "${timings[@]}"
printf '\nAll test stages passed.\n'
