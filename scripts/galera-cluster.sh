#!/usr/bin/env bash
# A three-node MariaDB Galera cluster under one directory, for trying the data layer on a
# multi-master topology and for its tests. It never touches a MariaDB the system runs: every node
# has its own data directory, socket, pid file and ports, and is stopped by its own pid.
#
#   scripts/galera-cluster.sh up   DIR   # start (or find running) three nodes, wait until ready
#   scripts/galera-cluster.sh down DIR   # stop the nodes started in DIR
#   scripts/galera-cluster.sh kill DIR N # kill -9 node N (1-3), as a crash would
#   scripts/galera-cluster.sh status DIR
#
# Ports (environment): GALERA_CLIENT_PORTS, the nodes' SQL ports (default "13306 13307 13308");
# GALERA_PORTS, their Galera replication ports (default "14567 14577 14587"); each node also uses
# the two ports after its Galera port, for incremental (IST) and full (rsync SST) state transfer.
# Clients connect as root with an empty password on 127.0.0.1, like the local MariaDB service.
set -euo pipefail

command=${1:-}
dir=${2:-}
if [[ -z "$command" || -z "$dir" ]]; then
  echo "usage: $0 up|down|status DIR | kill DIR NODE" >&2
  exit 2
fi
# shellcheck source=scripts/server-user.sh
source "$(dirname "${BASH_SOURCE[0]}")/server-user.sh"
dir=$(absolute_dir "$dir")
cd /
read -r -a client_ports <<<"${GALERA_CLIENT_PORTS:-13306 13307 13308}"
read -r -a galera_ports <<<"${GALERA_PORTS:-14567 14577 14587}"
if [[ ${#client_ports[@]} -ne 3 || ${#galera_ports[@]} -ne 3 ]]; then
  echo "GALERA_CLIENT_PORTS and GALERA_PORTS must name three ports each" >&2
  exit 2
fi
provider=${GALERA_PROVIDER:-/usr/lib/galera/libgalera_smm.so}
mariadbd=${MARIADBD:-$(command -v mariadbd || echo /usr/sbin/mariadbd)}
# Run by root, the nodes run as mysql (rsync state transfer run by root writes as nobody), so DIR
# is handed to mysql and must be reachable by it (not under a private directory such as pytest's).
run_as=$(id -un)
if [[ $(id -u) -eq 0 ]]; then run_as=mysql; fi

node_dir() { echo "$dir/node$1"; }
# The pid recorded at launch: mariadbd writes its own pid file only after a joining node's state
# transfer, and a node that fails there must still be seen to have died, and be stopped.
pid_of() { cat "$(node_dir "$1")/started.pid" 2>/dev/null || true; }
alive() { local pid; pid=$(pid_of "$1"); [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; }
client() {
  mariadb --protocol=socket -S "$(node_dir "$1")/mariadbd.sock" -u root -N -B -e "$2" 2>/dev/null
}
wsrep_status() { client "$1" "SHOW STATUS LIKE 'wsrep_$2'" | cut -f2; }
ready() { [[ "$(wsrep_status "$1" ready || true)" == ON ]]; }

write_config() {
  local n=$1 i=$((n - 1)) d members=""
  d=$(node_dir "$n")
  for port in "${galera_ports[@]}"; do members+="${members:+,}127.0.0.1:$port"; done
  mkdir -p "$d/data"
  cat >"$d/my.cnf" <<EOF
[mariadbd]
user=$run_as
datadir=$d/data
socket=$d/mariadbd.sock
pid-file=$d/mariadbd.pid
log-error=$d/error.log
bind-address=127.0.0.1
port=${client_ports[$i]}
skip-name-resolve
character-set-server=utf8mb4
innodb_buffer_pool_size=64M
innodb_log_file_size=32M
binlog_format=ROW
default_storage_engine=InnoDB
innodb_autoinc_lock_mode=2
wsrep_on=ON
wsrep_provider=$provider
wsrep_cluster_name=app_galera
wsrep_cluster_address=gcomm://$members
wsrep_node_name=node$n
wsrep_node_address=127.0.0.1:${galera_ports[$i]}
wsrep_provider_options=gmcast.listen_addr=tcp://127.0.0.1:${galera_ports[$i]};ist.recv_addr=127.0.0.1:$((galera_ports[i] + 1));gcache.size=64M
wsrep_sst_method=rsync
wsrep_sst_receive_address=127.0.0.1:$((galera_ports[i] + 2))
performance_schema=ON
performance_schema_consumer_events_statements_current=ON
performance_schema_consumer_events_statements_history_long=ON
EOF
}

start_node() {
  local n=$1 d
  d=$(node_dir "$n")
  alive "$n" && return 0
  rm -f "$d/mariadbd.pid" "$d/started.pid"  # left by a node that was killed
  write_config "$n"
  if [[ ! -d "$d/data/mysql" ]]; then
    # Root may log in over TCP with an empty password, as on the local MariaDB service.
    mariadb-install-db --defaults-file="$d/my.cnf" --auth-root-authentication-method=normal \
      --skip-test-db >"$d/install.log" 2>&1
  fi
  if [[ $(id -u) -eq 0 ]]; then chown -R "$run_as" "$dir"; fi
  require_reachable "$dir" "$run_as"
  # setsid: the node outlives this shell and the caller's terminal. It execs mariadbd in place (a
  # background job leads no process group), so $! is the node's pid.
  setsid "$mariadbd" --defaults-file="$d/my.cnf" "${@:2}" </dev/null >>"$d/stdout.log" 2>&1 &
  echo $! >"$d/started.pid"
}

wait_ready() {
  local n=$1
  for _ in $(seq 1 480); do
    if ready "$n"; then return 0; fi
    if ! alive "$n"; then break; fi
    sleep 0.25
  done
  # The directory may be gone by the time anyone looks: the log's end goes with the message.
  echo "node $n did not become ready; the end of $(node_dir "$n")/error.log:" >&2
  grep -E 'ERROR|Warning|WSREP: (SST|State transfer|Requesting)' "$(node_dir "$n")/error.log" 2>/dev/null |
    grep -v "ignored in --skip-name-resolve" | tail -n 15 >&2 || true
  return 1
}

up() {
  mkdir -p "$dir"
  local running=0
  for n in 1 2 3; do if alive "$n"; then running=1; fi; done
  if [[ $running -eq 0 ]]; then
    # No node runs: the first bootstraps a new cluster (after a full stop, from its own data).
    grastate="$(node_dir 1)/data/grastate.dat"
    if [[ -f "$grastate" ]]; then sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' "$grastate"; fi
    start_node 1 --wsrep-new-cluster
    wait_ready 1
  fi
  for n in 1 2 3; do start_node "$n"; done
  for n in 1 2 3; do wait_ready "$n"; done
  for _ in $(seq 1 120); do
    [[ "$(wsrep_status 1 cluster_size || true)" == 3 ]] && break
    sleep 0.25
  done
  # Replicated (InnoDB) grants: TCP root from the loopback address the nodes listen on.
  client 1 "CREATE USER IF NOT EXISTS root@'127.0.0.1'; \
    GRANT ALL ON *.* TO root@'127.0.0.1' WITH GRANT OPTION; CREATE DATABASE IF NOT EXISTS test"
  status
}

status() {
  for n in 1 2 3; do
    if alive "$n"; then
      echo "node$n pid $(pid_of "$n") port ${client_ports[$((n - 1))]}" \
        "state $(wsrep_status "$n" local_state_comment || echo '?')" \
        "cluster_size $(wsrep_status "$n" cluster_size || echo '?')"
    else
      echo "node$n down"
    fi
  done
}

down() {
  for n in 3 2 1; do
    local pid
    pid=$(pid_of "$n")
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; fi
  done
  for n in 1 2 3; do
    for _ in $(seq 1 120); do
      alive "$n" || break
      sleep 0.25
    done
    if alive "$n"; then kill -KILL "$(pid_of "$n")"; fi
  done
}

case "$command" in
  up) up ;;
  down) down ;;
  status) status ;;
  kill)
    node=${3:?which node: 1, 2 or 3}
    pid=$(pid_of "$node")
    [[ -n "$pid" ]] && kill -KILL "$pid"
    ;;
  *)
    echo "unknown command $command: up, down, status or kill" >&2
    exit 2
    ;;
esac
