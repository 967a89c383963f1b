#!/usr/bin/env bash
# A PostgreSQL primary and a streaming replica under one directory, for trying read replicas and
# for their tests. It never touches a PostgreSQL the system runs: each server has its own data
# directory, socket directory, port and pid file, and is stopped through its own data directory.
#
#   scripts/pg-cluster.sh up   DIR   # start (or find running) the primary and its replica
#   scripts/pg-cluster.sh down DIR   # stop both
#   scripts/pg-cluster.sh stop-replica DIR | start-replica DIR
#   scripts/pg-cluster.sh restart-primary DIR   # a fast shutdown and a start, as a restart does
#   scripts/pg-cluster.sh status DIR
#
# Ports (environment): PG_PRIMARY_PORT (default 5441) and PG_REPLICA_PORT (default 5442). Both
# listen on 127.0.0.1 with trust authentication for local users, and the primary has a database
# named `test` and a role named after the user running this script (`root` when root runs it),
# like the local PostgreSQL service. Run by root, the servers run as postgres.
set -euo pipefail

command=${1:-}
dir=${2:-}
if [[ -z "$command" || -z "$dir" ]]; then
  echo "usage: $0 up|down|status|stop-replica|start-replica|restart-primary DIR" >&2
  exit 2
fi
# shellcheck source=scripts/server-user.sh
source "$(dirname "${BASH_SOURCE[0]}")/server-user.sh"
dir=$(absolute_dir "$dir")
cd /
primary_port=${PG_PRIMARY_PORT:-5441}
replica_port=${PG_REPLICA_PORT:-5442}
bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
if [[ ! -x "$bin/initdb" ]]; then
  echo "PostgreSQL server binaries not found (set PG_BIN)" >&2
  exit 1
fi
client_user=$(id -un)
as_server() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg() { as_server "$bin/pg_ctl" -D "$dir/$1" -l "$dir/$1.log" -w -t 60 "${@:2}"; }
running() { as_server "$bin/pg_ctl" -D "$dir/$1" status >/dev/null 2>&1; }
psql_primary() {
  as_server psql -h "$dir/run" -p "$primary_port" -d postgres -v ON_ERROR_STOP=1 -qAt -c "$1"
}

settings() {
  local port=$1
  cat <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/run'
wal_level = replica
max_wal_senders = 5
hot_standby = on
hot_standby_feedback = on
fsync = off
synchronous_commit = on
shared_buffers = 64MB
max_connections = 60
shared_preload_libraries = 'pg_stat_statements'
EOF
}

up() {
  mkdir -p "$dir/run"
  if [[ $(id -u) -eq 0 ]]; then chown postgres "$dir" "$dir/run"; fi
  require_reachable "$dir" postgres
  if [[ ! -f "$dir/primary/PG_VERSION" ]]; then
    as_server "$bin/initdb" -D "$dir/primary" -A trust -U postgres --no-sync >"$dir/initdb.log"
    settings "$primary_port" >>"$dir/primary/postgresql.conf"
    echo "host replication all 127.0.0.1/32 trust" >>"$dir/primary/pg_hba.conf"
  fi
  running primary || pg primary start >/dev/null
  psql_primary "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$client_user')
    THEN CREATE ROLE \"$client_user\" SUPERUSER LOGIN; END IF; END \$\$"
  if ! psql_primary "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
    psql_primary "CREATE DATABASE test"
  fi
  if [[ ! -f "$dir/replica/PG_VERSION" ]]; then
    # A copy of the primary that follows it: -R writes standby.signal and primary_conninfo.
    as_server "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres \
      -D "$dir/replica" -R -X stream --checkpoint=fast --no-sync >"$dir/basebackup.log" 2>&1
    settings "$replica_port" >>"$dir/replica/postgresql.conf"
  fi
  running replica || pg replica start >/dev/null
  status
}

status() {
  for server in primary replica; do
    if running "$server"; then
      echo "$server pid $(head -n 1 "$dir/$server/postmaster.pid") port" \
        "$([[ $server == primary ]] && echo "$primary_port" || echo "$replica_port")"
    else
      echo "$server down"
    fi
  done
}

down() {
  for server in replica primary; do
    if running "$server"; then pg "$server" stop -m fast >/dev/null; fi
  done
}

case "$command" in
  up) up ;;
  down) down ;;
  status) status ;;
  stop-replica) if running replica; then pg replica stop -m fast >/dev/null; fi ;;
  start-replica) running replica || pg replica start >/dev/null ;;
  restart-primary) pg primary restart -m fast >/dev/null ;;
  *)
    echo "unknown command $command: up, down, status, stop-replica, start-replica or" \
      "restart-primary" >&2
    exit 2
    ;;
esac
