#!/usr/bin/env bash
# Throwaway PostgreSQL and MariaDB servers for the tests, on 127.0.0.1 at
# non-default ports, with data directories under a temporary directory.
#
#   scripts/test-databases.sh start   install (Debian packages) if missing, start both, print env
#   scripts/test-databases.sh env     print the env lines for running servers
#   scripts/test-databases.sh stop    stop what `start` started and delete the data
#
# Both servers refuse to run as root, so they run as the postgres / mysql users.
# Prints shell lines: EWII_TEST_POSTGRES_URL=… EWII_TEST_MARIADB_URL=…
set -euo pipefail

state="${EWII_DB_STATE:-${TMPDIR:-/tmp}/ewii-test-databases}"
pg_port="${EWII_PG_PORT:-55432}"
maria_port="${EWII_MARIA_PORT:-53306}"
log() { echo "test-databases: $*" >&2; }

pg_bin() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [[ -n "$d" ]] && echo "$d"
}

install_if_missing() {
  local need=()
  [[ -n "$(pg_bin)" ]] || need+=(postgresql)
  command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]] || need+=(mariadb-server)
  command -v runuser >/dev/null 2>&1 || need+=(util-linux)
  if ((${#need[@]})); then
    log "installing ${need[*]} (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # Keep the packages' own service start-up out of the way: we run our own servers.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
    rm -f /usr/sbin/policy-rc.d
  fi
}

print_env() {
  echo "EWII_TEST_POSTGRES_URL=postgres://ewii:ewii@127.0.0.1:${pg_port}/ewii_test"
  echo "EWII_TEST_POSTGRES_ADMIN_URL=postgres://postgres:postgres@127.0.0.1:${pg_port}/postgres"
  echo "EWII_TEST_MARIADB_URL=mysql://ewii:ewii@127.0.0.1:${maria_port}/ewii_test"
  echo "EWII_TEST_MARIADB_ADMIN_URL=mysql://root@127.0.0.1:${maria_port}/mysql"
}

wait_for() { # description, command...
  local what="$1"; shift
  for _ in $(seq 1 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "$what did not come up; see the logs under $state"
  return 1
}

start_postgres() {
  local bin; bin="$(pg_bin)"
  local data="$state/pg"
  mkdir -p "$data" && chown -R postgres:postgres "$state/pg"
  mkdir -p "$state/pg-run" && chown postgres:postgres "$state/pg-run"
  if [[ ! -f "$data/PG_VERSION" ]]; then
    # Passwords are checked over TCP (scram), so wrong-password tests mean
    # something; the private unix socket trusts local setup commands.
    echo postgres > "$state/pg-run/pw" && chown postgres "$state/pg-run/pw"
    runuser -u postgres -- "$bin/initdb" -D "$data" -U postgres --auth-host=scram-sha-256 \
      --auth-local=trust --pwfile="$state/pg-run/pw" --no-sync >"$state/pg-run/init.log" 2>&1
  fi
  if runuser -u postgres -- "$bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port"; then
    log "PostgreSQL already running on port $pg_port"
  else
  runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$state/pg-run/pg.log" -w -o \
    "-p $pg_port -c listen_addresses=127.0.0.1 -k $state/pg-run -c fsync=off" start >&2
  fi
  wait_for "PostgreSQL" runuser -u postgres -- "$bin/pg_isready" -h 127.0.0.1 -p "$pg_port"
  local psql=(runuser -u postgres -- "$bin/psql" -h "$state/pg-run" -p "$pg_port" -U postgres -v ON_ERROR_STOP=1 -q)
  "${psql[@]}" -d postgres -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ewii') THEN CREATE ROLE ewii LOGIN PASSWORD 'ewii' CREATEDB; END IF; END \$\$;" >&2
  "${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'ewii_test'" | grep -q 1 \
    || "${psql[@]}" -d postgres -c "CREATE DATABASE ewii_test OWNER ewii" >&2
}

start_mariadb() {
  local data="$state/maria"
  mkdir -p "$data" "$state/maria-run" && chown -R mysql:mysql "$data" "$state/maria-run"
  if [[ ! -d "$data/mysql" ]]; then
    # --force avoids a hostname lookup that fails on minimal machines.
    mariadb-install-db --user=mysql --datadir="$data" --auth-root-authentication-method=normal \
      --skip-test-db --force >"$state/maria-init.log" 2>&1
  fi
  if mariadb-admin --protocol=tcp -h 127.0.0.1 -P "$maria_port" -u root ping >/dev/null 2>&1; then
    log "MariaDB already running on port $maria_port"
  else
  runuser -u mysql -- mariadbd --no-defaults --datadir="$data" --port="$maria_port" \
    --bind-address=127.0.0.1 --socket="$state/maria-run/mysqld.sock" \
    --pid-file="$state/maria-run/mysqld.pid" --skip-name-resolve \
    --innodb-flush-log-at-trx-commit=0 --log-error="$state/maria-run/maria.log" >/dev/null 2>&1 &
  fi
  wait_for "MariaDB" mariadb-admin --protocol=tcp -h 127.0.0.1 -P "$maria_port" -u root ping
  mariadb --protocol=tcp -h 127.0.0.1 -P "$maria_port" -u root -e "
    CREATE DATABASE IF NOT EXISTS ewii_test;
    CREATE USER IF NOT EXISTS 'ewii'@'%' IDENTIFIED BY 'ewii';
    GRANT ALL PRIVILEGES ON *.* TO 'ewii'@'%' WITH GRANT OPTION;
    FLUSH PRIVILEGES;" >&2
}

stop_all() {
  local bin; bin="$(pg_bin || true)"
  if [[ -n "$bin" && -f "$state/pg/postmaster.pid" ]]; then
    runuser -u postgres -- "$bin/pg_ctl" -D "$state/pg" -m immediate stop >&2 || true
  fi
  if [[ -f "$state/maria-run/mysqld.pid" ]]; then
    kill "$(cat "$state/maria-run/mysqld.pid")" 2>/dev/null || true
    for _ in $(seq 1 50); do [[ -f "$state/maria-run/mysqld.pid" ]] || break; sleep 0.2; done
  fi
  rm -rf "$state"
}

case "${1:-}" in
  start)
    install_if_missing
    mkdir -p "$state" && chmod 755 "$state"
    start_postgres
    start_mariadb
    print_env
    ;;
  env) print_env ;;
  stop) stop_all ;;
  *) echo "usage: $0 start|env|stop" >&2; exit 2 ;;
esac
