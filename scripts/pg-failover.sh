#!/usr/bin/env bash
# A pg_auto_failover formation under one directory: a monitor and two PostgreSQL nodes (a primary
# and its hot standby), which the monitor promotes and demotes. For trying failover and for its
# tests; it never touches a PostgreSQL the system runs: every server has its own data directory,
# port and pg_autoctl state (XDG directories under DIR), and is stopped through them.
#
#   scripts/pg-failover.sh up DIR        # start the monitor and both nodes, wait for primary+secondary
#   scripts/pg-failover.sh failover DIR  # pg_autoctl perform failover, wait until it is done
#   scripts/pg-failover.sh state DIR     # pg_autoctl show state
#   scripts/pg-failover.sh down DIR
#
# Ports (environment): PG_MONITOR_PORT (default 5451), PG_NODE_PORTS (default "5452 5453").
# Needs Debian's postgresql-15-auto-failover and pg-auto-failover-cli. Clients connect as the
# user running this script (root when root runs it), trust authentication, database `test`:
#   postgresql+psycopg://root@/test?host=127.0.0.1:5452&host=127.0.0.1:5453&target_session_attrs=read-write
set -euo pipefail

command=${1:-}
dir=${2:-}
if [[ -z "$command" || -z "$dir" ]]; then
  echo "usage: $0 up|failover|state|down DIR" >&2
  exit 2
fi
# shellcheck source=scripts/server-user.sh
source "$(dirname "${BASH_SOURCE[0]}")/server-user.sh"
dir=$(absolute_dir "$dir")
cd /
monitor_port=${PG_MONITOR_PORT:-5451}
read -r -a node_ports <<<"${PG_NODE_PORTS:-5452 5453}"
bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
client_user=$(id -un)
# The servers' own PATH: PostgreSQL's binaries first, nothing of the caller's (postgres may not
# be able to read it).
export PATH="$bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" XDG_CONFIG_HOME="$dir/xdg/config" \
  XDG_DATA_HOME="$dir/xdg/data" XDG_RUNTIME_DIR="$dir/xdg/run"
monitor_uri="postgres://autoctl_node@127.0.0.1:$monitor_port/pg_auto_failover?sslmode=disable"

as_server() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- env PATH="$PATH" XDG_CONFIG_HOME="$XDG_CONFIG_HOME" \
      XDG_DATA_HOME="$XDG_DATA_HOME" XDG_RUNTIME_DIR="$XDG_RUNTIME_DIR" "$@"
  else
    "$@"
  fi
}
autoctl() { as_server pg_autoctl "$@"; }
supervised() { [[ -f "$dir/$1.pid" ]] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }

start() {
  local name=$1
  supervised "$name" && return 0
  # setsid: the supervisor outlives this shell; its pid is ours to stop it by.
  if [[ $(id -u) -eq 0 ]]; then
    setsid runuser -u postgres -- env PATH="$PATH" XDG_CONFIG_HOME="$XDG_CONFIG_HOME" \
      XDG_DATA_HOME="$XDG_DATA_HOME" XDG_RUNTIME_DIR="$XDG_RUNTIME_DIR" \
      pg_autoctl "${@:2}" </dev/null >>"$dir/$name.log" 2>&1 &
  else
    setsid pg_autoctl "${@:2}" </dev/null >>"$dir/$name.log" 2>&1 &
  fi
  echo $! >"$dir/$name.pid"
}

wait_for() {
  local what=$1 check=$2
  for _ in $(seq 1 240); do
    if eval "$check" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  # The directory may be gone by the time anyone looks: the logs' ends go with the message.
  echo "$what did not happen in time; the ends of the logs in $dir:" >&2
  for log in "$dir"/*.log; do
    [[ -f "$log" ]] && { echo "== $(basename "$log")"; tail -n 8 "$log"; } >&2
  done
  return 1
}

states() { autoctl show state --pgdata "$dir/monitor" 2>/dev/null; }
# Each server's own pid (to stop or pause one as a fault test does) and its supervisor's.
pids() {
  local name postmaster
  for name in monitor node1 node2; do
    postmaster=$(head -n 1 "$dir/$name/postmaster.pid" 2>/dev/null || true)
    echo "$name: postgres pid ${postmaster:-none}, pg_autoctl supervisor pid $(cat "$dir/$name.pid" 2>/dev/null || echo none)"
  done
}
formation_ready() {
  [[ $(states | grep -c -E '\|\s+primary\s+\|\s+primary\s*$') -eq 1 &&
     $(states | grep -c -E '\|\s+secondary\s+\|\s+secondary\s*$') -eq 1 ]]
}

up() {
  mkdir -p "$dir/xdg/config" "$dir/xdg/data" "$dir/xdg/run"
  if [[ $(id -u) -eq 0 ]]; then chown -R postgres "$dir"; chmod 700 "$dir/xdg/run"; fi
  require_reachable "$dir" postgres
  start monitor create monitor --pgdata "$dir/monitor" --pgport "$monitor_port" \
    --pgctl "$bin/pg_ctl" --hostname 127.0.0.1 --auth trust --no-ssl --run
  wait_for "the monitor" "as_server $bin/pg_isready -h 127.0.0.1 -p $monitor_port"
  for n in 1 2; do
    start "node$n" create postgres --pgdata "$dir/node$n" --pgport "${node_ports[$((n - 1))]}" \
      --pgctl "$bin/pg_ctl" --hostname 127.0.0.1 --auth trust --no-ssl --dbname test --monitor "$monitor_uri" \
      --name "node$n" --run
    # The second node clones the first: start it once the first is the primary.
    if [[ $n -eq 1 ]]; then
      wait_for "node1 as primary" "states | grep -q -E '\|\s+single\s+\|\s+single\s*$'"
    fi
  done
  # The clone (pg_basebackup) waits for a checkpoint, by default a slow spread one: ask for an
  # immediate one until the standby is there.
  wait_for "a primary and a secondary" \
    "formation_ready || { as_server psql -h 127.0.0.1 -p ${node_ports[0]} -d postgres -qc CHECKPOINT; false; }"
  local primary_port
  primary_port=$(primary_port)
  as_server psql -h 127.0.0.1 -p "$primary_port" -d test -qAt -v ON_ERROR_STOP=1 -c \
    "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$client_user')
     THEN CREATE ROLE \"$client_user\" SUPERUSER LOGIN; END IF; END \$\$"
  states
  pids
}

primary_port() {
  states | awk -F'|' '$NF ~ /primary/ { split($3, a, ":"); gsub(/ /, "", a[2]); print a[2] }'
}

failover() {
  autoctl perform failover --pgdata "$dir/monitor" >>"$dir/failover.log" 2>&1
  wait_for "the failover" formation_ready
  states
}

down() {
  for name in node2 node1 monitor; do
    if supervised "$name"; then
      autoctl stop --pgdata "$dir/$name" >/dev/null 2>&1 || kill -TERM "$(cat "$dir/$name.pid")"
    fi
  done
  for name in node2 node1 monitor; do
    for _ in $(seq 1 120); do
      supervised "$name" || break
      sleep 0.25
    done
    if supervised "$name"; then kill -KILL "$(cat "$dir/$name.pid")"; fi
  done
}

case "$command" in
  up) up ;;
  failover) failover ;;
  state) states && pids ;;
  down) down ;;
  *)
    echo "unknown command $command: up, failover, state or down" >&2
    exit 2
    ;;
esac
