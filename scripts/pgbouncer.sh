#!/usr/bin/env bash
# A PgBouncer in front of a PostgreSQL server, under one directory, for trying the data layer
# behind a pooler and for its tests. Its configuration is Debian's stock one but for the mode, the
# address and where it keeps its files: no `ignore_startup_parameters`, as most poolers run.
#
#   scripts/pgbouncer.sh up   DIR   # start (or find running) the pooler
#   scripts/pgbouncer.sh down DIR   # stop it, by the pid in DIR
#   scripts/pgbouncer.sh status DIR
#
# Environment: PGBOUNCER_PORT (default 6432), PGBOUNCER_MODE (transaction or session; default
# transaction), PGBOUNCER_SERVER (the PostgreSQL server as host:port; default 127.0.0.1:5432).
# Every database of that server is served under its own name, to every user, with trust
# authentication (the server's own rules still apply). Run by root, the pooler runs as postgres.
set -euo pipefail

command=${1:-}
dir=${2:-}
if [[ -z "$command" || -z "$dir" ]]; then
  echo "usage: $0 up|down|status DIR" >&2
  exit 2
fi
# shellcheck source=scripts/server-user.sh
source "$(dirname "${BASH_SOURCE[0]}")/server-user.sh"
dir=$(absolute_dir "$dir")
cd /
port=${PGBOUNCER_PORT:-6432}
mode=${PGBOUNCER_MODE:-transaction}
server=${PGBOUNCER_SERVER:-127.0.0.1:5432}
binary=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
if [[ ! -x "$binary" ]]; then
  echo "pgbouncer is not installed (Debian package pgbouncer)" >&2
  exit 1
fi
case "$mode" in
  transaction | session) ;;
  *)
    echo "PGBOUNCER_MODE is $mode: transaction or session" >&2
    exit 2
    ;;
esac
as_pooler() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
pid_file="$dir/pgbouncer.pid"
running() { [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

configuration() {
  cat <<EOF
[databases]
* = host=${server%:*} port=${server##*:}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
pool_mode = $mode
max_client_conn = 400
default_pool_size = 20
server_lifetime = 3600
logfile = $dir/pgbouncer.log
pidfile = $pid_file
EOF
}

up() {
  mkdir -p "$dir"
  if [[ $(id -u) -eq 0 ]]; then chown postgres "$dir"; fi
  require_reachable "$dir" postgres
  configuration >"$dir/pgbouncer.ini"
  printf '"%s" ""\n"postgres" ""\n' "$(id -un)" >"$dir/users.txt"
  if ! running; then
    as_pooler "$binary" -d "$dir/pgbouncer.ini"
  fi
  for _ in $(seq 1 50); do
    if pg_isready -h 127.0.0.1 -p "$port" -q 2>/dev/null; then
      status
      return
    fi
    sleep 0.1
  done
  echo "pgbouncer did not answer on port $port; its log says: $(tail -n 5 "$dir/pgbouncer.log" 2>/dev/null)" >&2
  exit 1
}

# The running pooler's own settings, from the configuration `up` wrote (the environment of a
# later call may differ).
configured() { sed -n "s/^$1 = //p" "$dir/pgbouncer.ini" 2>/dev/null; }

status() {
  if running; then
    echo "pgbouncer pid $(cat "$pid_file") port $(configured listen_port) mode $(configured pool_mode)"
  else
    echo "pgbouncer down"
  fi
}

down() {
  if running; then
    kill "$(cat "$pid_file")"
    for _ in $(seq 1 50); do
      running || return 0
      sleep 0.1
    done
    kill -9 "$(cat "$pid_file")" 2>/dev/null || true
  fi
}

case "$command" in
  up) up ;;
  down) down ;;
  status) status ;;
  *)
    echo "unknown command $command: up, down or status" >&2
    exit 2
    ;;
esac
