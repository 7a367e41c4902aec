#!/usr/bin/env bash
# The project's whole test suite, as CI runs it. Installs what it needs
# (Python venv with the official MCP SDK, Node 22 + the MCP conformance suite)
# into a cache outside the clone, so reruns are incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

export EWII_CACHE="${EWII_CACHE:-$HOME/.cache/ewii}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$EWII_CACHE/target}"
export EWII_ADAPTER_BIN="$CARGO_TARGET_DIR/debug/ewii-adapter"
mkdir -p "$EWII_CACHE"

step() { printf '\n==> %s\n' "$*"; }

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

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit, driver test kit on SQLite/PostgreSQL/MariaDB, adapter CLI and MCP, tunnel over QUIC, demo)"
cargo test --workspace --locked

step "the wire's fuzz targets compile, on ewii-wire alone (running them needs nightly: docs/protocol.md, Fuzzing)"
(cd tunnel/fuzz && cargo check --locked --bins)

step "official Python MCP SDK against ewii-adapter"
bash scripts/test-python-mcp.sh

step "operator and customer flow: ewii-hub, ewii-adapter, ewii-client over QUIC, official Python MCP SDK as the agent"
cargo build --workspace --bins --locked
bash scripts/test-hub-python.sh

step "official MCP conformance suite against ewii-adapter"
bash scripts/mcp-conformance.sh

step "the README's demo: cargo run --release -- demo --once"
cargo run --release --locked -- demo --once

printf '\nAll test stages passed.\n'
