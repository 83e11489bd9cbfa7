#!/usr/bin/env bash
# A two-node Ray cluster on this machine that loses a node in the middle of a search.
#
# Starts a head (1 CPU) and a second node (1 CPU) with the dashboard off, runs a tiny search on
# synthetic data with --backend=ray and 2 workers (so that one child runs on each node), kills the
# second node's raylet with SIGKILL while it trains a child, and lets the search finish on the head.
# The lost child is retried by Ray (or recorded as failed with the reason): every trial is stored
# once, and the controller gets one reward per child.
#
# Secure by default: the cluster requires Ray's token authentication (RAY_AUTH_MODE=token), since
# anyone who can reach the ports of a Ray cluster without it can run code on it. The token is
# RAY_AUTH_TOKEN or the file RAY_AUTH_TOKEN_PATH when given, else a new one in WORK_DIR/auth_token
# (mode 600). The nodes cannot stay on loopback: a second node only joins a Ray that is not in its
# single-machine mode, and outside it Ray replaces 127.0.0.1 by the machine's address and its
# servers listen on that address or on every interface (README, "Ray on several machines"). So
# the nodes are given the machine's address, the one they advertise anyway.
#
# Usage: scripts/ray_two_nodes.sh SEARCH_DIR [WORK_DIR]
#   WORK_DIR (default: a new temp folder) holds Ray's temp dir, `pgids` (the process groups of the
#   two nodes), `address` (the head's, once it runs) and `auth_token`. On exit both groups are
#   killed (by id): other Ray clusters on this machine are left alone. `ray stop --force` would
#   stop every Ray process on the machine.
# Environment: PYTHON (default: python), RAY (default: ray), TRIALS (default: 6),
#   RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH (default: a new token).
# Exit code: the search's (0 when it finished), or 3 when no child ever ran on the second node.
set -euo pipefail

SEARCH_DIR=${1:?usage: scripts/ray_two_nodes.sh SEARCH_DIR [WORK_DIR]}
WORK=${2:-$(mktemp -d /tmp/raytwo.XXXX)}  # short: Ray's socket paths must stay under 108 bytes
PYTHON=${PYTHON:-python}
RAY=${RAY:-ray}
TRIALS=${TRIALS:-6}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$WORK/tmp"
: > "$WORK/pgids"
rm -f "$WORK/address"

# Token authentication for the nodes and the search (each Ray process reads these at start).
export RAY_AUTH_MODE=token
if [[ -z ${RAY_AUTH_TOKEN:-} && -z ${RAY_AUTH_TOKEN_PATH:-} ]]; then
  (umask 077 && "$PYTHON" -c 'import secrets; print(secrets.token_hex(32))' > "$WORK/auth_token")
  export RAY_AUTH_TOKEN_PATH="$WORK/auth_token"
fi
# Ray's multi-node mode (its default on Linux; "0", the single-machine mode that a local Ray of
# mnas_search uses, refuses a second node).
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1
# The address Ray gives this machine (a UDP connect sends nothing; no route: loopback).
NODE_IP=$("$PYTHON" -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
  s.connect(("8.8.8.8", 53)); print(s.getsockname()[0])
except OSError:
  print("127.0.0.1")')

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'
}

stop_cluster() {
  local g
  for g in $(sort -u "$WORK/pgids"); do
    [[ $g == "$(ps -o pgid= -p $$ | tr -d ' ')" ]] && continue  # never this script's own group
    kill -9 -- "-$g" 2>/dev/null || true
  done
}
trap stop_cluster EXIT

# The process group of the process that runs `pattern` (each `ray start` makes its own group).
pgid_of() {
  local pid
  pid=$(pgrep -f -- "$1" | head -n 1)
  if [[ -z $pid ]]; then
    echo "no process matches $1: the node did not start (see $WORK/*.log)" >&2
    return 1
  fi
  ps -o pgid= -p "$pid" | tr -d ' '
}

PORT=$(free_port)
NODE2_PORT=$(free_port)
common=(--node-ip-address="$NODE_IP" --num-cpus=1 --temp-dir="$WORK/tmp" --disable-usage-stats)
# Two nodes on one machine: every per-node port must differ, so each is picked free here.
node_ports() {
  echo --object-manager-port="$(free_port)" --dashboard-agent-listen-port="$(free_port)" \
       --dashboard-agent-grpc-port="$(free_port)" --runtime-env-agent-port="$(free_port)" \
       --metrics-export-port="$(free_port)"
}
# shellcheck disable=SC2046
# setsid: each node's processes get a process group of their own, which stop_cluster kills.
setsid "$RAY" start --head --port="$PORT" --ray-client-server-port="$(free_port)" \
  --include-dashboard=false "${common[@]}" $(node_ports) > "$WORK/head.log" 2>&1
pgid_of "gcs_server.*--gcs_server_port=$PORT" >> "$WORK/pgids"
# shellcheck disable=SC2046
setsid "$RAY" start --address="$NODE_IP:$PORT" --node-manager-port="$NODE2_PORT" "${common[@]}" \
  $(node_ports) > "$WORK/node2.log" 2>&1
pgid_of "raylet.*--node_manager_port=$NODE2_PORT" >> "$WORK/pgids"
RAYLET2=$(pgrep -f -- "raylet.*--node_manager_port=$NODE2_PORT" | head -n 1)
echo "$NODE_IP:$PORT" > "$WORK/address"
echo "cluster: head at $NODE_IP:$PORT (token authentication), node 2's raylet pid $RAYLET2 (groups: $(tr '\n' ' ' < "$WORK/pgids"))"

cd "$ROOT"
"$PYTHON" launch.py search --search_dir="$SEARCH_DIR" --backend=ray --ray_address="$NODE_IP:$PORT" \
  --workers=2 --controller=evolution --trials="$TRIALS" --trials_per_update=3 --seed=3 \
  --search_space=micro --dataset=synthetic --proxy_resolution=16 --proxy_train_images=128 \
  --proxy_val_images=64 --proxy_epochs=1 --proxy_batch_size=64 --proxy_width=0.25 --references= \
  --target_flops=30e6 --noprogress > "$WORK/search.log" 2>&1 &
SEARCH=$!

# Wait until node 2 trains a child (a worker of its raylet runs the task), then kill its raylet.
killed=0
while kill -0 "$SEARCH" 2>/dev/null; do
  for pid in $(pgrep -P "$RAYLET2" || true); do
    if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q '^ray::_ray_run_job'; then
      sleep 1  # well inside the child: TF is being imported or the child trains
      kill -9 "$RAYLET2"
      echo "killed node 2's raylet (pid $RAYLET2) while its worker $pid ran a child"
      killed=1
      break 2
    fi
  done
  sleep 0.2
done
rc=0
wait "$SEARCH" || rc=$?
echo "search exit code: $rc (log: $WORK/search.log)"
if [[ $killed == 0 ]]; then
  echo "no child ran on node 2: nothing was killed"
  exit 3
fi
exit "$rc"
