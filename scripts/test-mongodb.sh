#!/usr/bin/env bash
# The nx-27017 MongoDB wire-protocol stand-in for the tests: a server backed
# by SQLite (PyPI nx-27017), NOT MongoDB. No MongoDB server can be installed
# from the reachable registries; the stand-in speaks the wire protocol well
# enough for the MongoDB driver's kit (the checks it cannot show are gated to
# a real server given by EWII_TEST_MONGODB_URL; see drivers/mongodb/tests/kit.rs).
#
#   scripts/test-mongodb.sh install   venv with nx-27017 (pinned) under $EWII_CACHE, if missing
#   scripts/test-mongodb.sh start     install, start one on 127.0.0.1, print env lines
#   scripts/test-mongodb.sh env       print the env lines of the running one
#   scripts/test-mongodb.sh stop      stop what `start` started
#
# The driver's tests start their own stand-in on a free port (they need only
# `install`); `start` is for manual runs and flows. Prints shell lines:
# EWII_NX27017_BIN=… EWII_TEST_NX27017_URL=mongodb://127.0.0.1:PORT/ewii_test
set -euo pipefail

NX27017_VERSION="0.8.1"   # also in conformance/driver-kit/src/documents/stand_in.rs
cache="${EWII_CACHE:-$HOME/.cache/ewii}"
venv="$cache/venv-nx-27017-$NX27017_VERSION"
bin="$venv/bin/nx-27017"
state="${EWII_MONGO_STATE:-${TMPDIR:-/tmp}/ewii-test-mongodb}"
port="${EWII_MONGO_PORT:-57017}"
log() { echo "test-mongodb: $*" >&2; }

install() {
  local installed=""
  [[ -x "$bin" ]] && installed="$("$venv/bin/pip" show nx-27017 2>/dev/null || true)"
  if grep -qx "Version: $NX27017_VERSION" <<<"$installed"; then
    return 0
  fi
  log "installing nx-27017==$NX27017_VERSION (a MongoDB wire-protocol stand-in, not MongoDB) into $venv"
  mkdir -p "$cache"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "nx-27017==$NX27017_VERSION" >&2
}

print_env() {
  echo "EWII_NX27017_BIN=$bin"
  echo "EWII_TEST_NX27017_URL=mongodb://127.0.0.1:${port}/ewii_test"
}

start() {
  install
  mkdir -p "$state"
  if [[ -f "$state/nx.pid" ]] && kill -0 "$(cat "$state/nx.pid")" 2>/dev/null; then
    print_env; return 0
  fi
  log "starting nx-27017 $NX27017_VERSION (wire-compatible stand-in, NOT MongoDB) on 127.0.0.1:$port"
  "$bin" --data-dir memory --host 127.0.0.1 --port "$port" \
    --pid-file "$state/nx-own.pid" --log-file "$state/nx.log" >"$state/stdout.log" 2>&1 &
  echo $! >"$state/nx.pid"
  for _ in $(seq 1 100); do
    if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$port" 2>/dev/null; then
      print_env; return 0
    fi
    sleep 0.2
  done
  log "nx-27017 did not come up; see $state/nx.log"
  return 1
}

stop() {
  if [[ -f "$state/nx.pid" ]]; then
    kill "$(cat "$state/nx.pid")" 2>/dev/null || true
    rm -f "$state/nx.pid"
  fi
  rm -rf "$state"
}

case "${1:-}" in
  install) install; echo "EWII_NX27017_BIN=$bin" ;;
  start) start ;;
  env) print_env ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|env|stop" >&2; exit 2 ;;
esac
