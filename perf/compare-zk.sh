#!/usr/bin/env bash
# perf/compare-zk.sh — Braid's ZooKeeper front end next to a real ZooKeeper 3.8, same machine,
# same load generator (`braid bench zk`), in one run: ZooKeeper 1 server, ZooKeeper 3 servers
# (perf/zk-anchor.sh), Braid 1 node, Braid 3 nodes (release build), each fresh,
# each driven through the same workloads with its sessions spread over all its servers:
#   set      setData only (write-heavy)
#   create   create only (new znodes)
#   read     getData 9 : setData 1 (read-heavy)
#   get      getData only (read capacity)
#   rate     setData at a fixed --rate for every system (p99 at equal load)
#   watch    setData at a fixed --rate on 100 keys, --watchers sessions watching every key
#   failover (3 servers only, not in the default list; put it last: it kills and restarts
#            servers) kazoo clients writing while the leader is SIGKILLed --kills times
#            (perf/zk_failover.py): each client's time without a successful write
# Both systems fsync every write before answering it (ZooKeeper's forceSync=yes default,
# Braid's only mode). Prints a table with writes/s, reads/s, p50/p99/p999 and Braid/ZooKeeper
# ratios; writes each run's JSON to perf/out/zk-compare/, the summary to
# perf/out/zk-compare.json and perf/baselines/zk-compare-YYYY-MM-DD.json, and the latency
# curves to perf/out/zk-compare/latency-WORKLOAD.svg (perf/plot-latency.py). Stops all it
# started.
# The load generator runs on the same machine as the servers and competes with them for CPU.
#
# Usage (from the repository root):
#   perf/compare-zk.sh [--seconds S] [--sessions N] [--in-flight D] [--rate R] [--watchers W]
#                      [--keys K] [--data-bytes B] [--systems "zk1 zk3 braid1 braid3"]
#                      [--workloads "set create read get rate watch"] [--kills K] [--tag TAG]
# Defaults: 10 s per run, 16 sessions, 1 in flight, --rate 1000 ops/s, 4 watchers, 1000 keys,
# 100 bytes. --tag names a variant: its files become zk-compare-TAG*. BRAID=path picks the
# braid binary (default: a release build in the cargo target). BRAID_CORES=N gives each Braid
# node N shards (default: the node's own default, one per CPU). Node i's shards are pinned
# starting at CPU (i-1) mod the CPU count (--cpuset), so that the nodes' first shards, which
# hold the tree, do not all share CPU 0.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_PER_RUN=10 SESSIONS=16 IN_FLIGHT=1 RATE=1000 WATCHERS=4 KEYS=1000 DATA_BYTES=100 KILLS=5
SYSTEMS="zk1 zk3 braid1 braid3"
WORKLOADS="set create read get rate watch"
NAME=zk-compare
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_PER_RUN="$2" ;;
    --sessions) SESSIONS="$2" ;;
    --in-flight) IN_FLIGHT="$2" ;;
    --rate) RATE="$2" ;;
    --watchers) WATCHERS="$2" ;;
    --keys) KEYS="$2" ;;
    --data-bytes) DATA_BYTES="$2" ;;
    --systems) SYSTEMS="$2" ;;
    --workloads) WORKLOADS="$2" ;;
    --kills) KILLS="$2" ;;
    --tag) NAME="zk-compare-$2" ;;
    *) echo "unknown option $1 (see the head of $0)" >&2; exit 2 ;;
  esac
  shift 2
done

OUT="$ROOT/perf/out/$NAME"
WORK="$ROOT/perf/out/$NAME-data"
cd "$ROOT"
rm -rf "$OUT" "$WORK"
mkdir -p "$OUT" "$WORK"
if [ -z "${BRAID:-}" ]; then
  cargo build --release -q -p braid
  BRAID="${CARGO_TARGET_DIR:-$ROOT/target}/release/braid"
fi
# Ports: ZooKeeper uses ZK_PORT.. (+1000, +2000 for its quorum), Braid BRAID_PORT.. upwards.
ZK_PORT=$((30000 + RANDOM % 2000))
BRAID_PORT=$((ZK_PORT + 3000))
BRAID_PIDS=()
ZK_DIRS=()

stop_all() {
  for pid in "${BRAID_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for dir in "${ZK_DIRS[@]}"; do "$ROOT/perf/zk-anchor.sh" stop "$dir" || true; done
  for pid in "${BRAID_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  BRAID_PIDS=()
  ZK_DIRS=()
}
trap stop_all EXIT

# A four-letter word's answer from 127.0.0.1:PORT (empty if nothing answers).
four_letter() {
  python3 - "$1" "$2" <<'PY'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
    s.sendall(sys.argv[2].encode())
    out = b""
    while chunk := s.recv(4096):
        out += chunk
    print(out.decode(errors="replace"))
except OSError:
    print("")
PY
}

# Starts Braid on N nodes; sets CONNECT once every node serves and one reports itself leader
# (or standalone).
start_braid() {
  local n="$1" peers="" connect=""
  if [ "$n" -gt 1 ]; then
    for i in $(seq 1 "$n"); do peers="$peers${peers:+,}$i@127.0.0.1:$((BRAID_PORT + 10 * i + 3))"; done
  fi
  local cpus
  cpus=$(nproc)
  for i in $(seq 1 "$n"); do
    local base=$((BRAID_PORT + 10 * i)) args=() cpuset=""
    [ -n "$peers" ] && args=(--peers "$peers")
    for k in $(seq 0 $((cpus - 1))); do cpuset="$cpuset${cpuset:+,}$(( (i - 1 + k) % cpus ))"; done
    args+=(--cpuset "$cpuset")
    [ -n "${BRAID_CORES:-}" ] && args+=(--cores "$BRAID_CORES")
    "$BRAID" start --node-id "$i" "${args[@]}" --data-dir "$WORK/braid$n-$i" --kafka-addr "127.0.0.1:$base" \
      --admin-addr "127.0.0.1:$((base + 1))" --zk-addr "127.0.0.1:$((base + 2))" \
      >"$WORK/braid$n-$i.log" 2>&1 &
    BRAID_PIDS+=($!)
    connect="$connect${connect:+,}127.0.0.1:$((base + 2))"
  done
  # Ready once every node serves (a node out of its quorum answers srvr with "not currently
  # serving", as ZooKeeper does) and one reports itself leader (or standalone).
  for _ in $(seq 1 300); do
    local ok=0 leader=0
    for i in $(seq 1 "$n"); do
      local port=$((BRAID_PORT + 10 * i + 2)) srvr
      srvr=$(four_letter "$port" srvr)
      grep -Eq '^Mode: ' <<<"$srvr" && ok=$((ok + 1))
      grep -Eq '^Mode: (leader|standalone)' <<<"$srvr" && leader=1
    done
    if [ "$ok" = "$n" ] && [ "$leader" = 1 ]; then
      CONNECT="$connect"
      return
    fi
    sleep 0.2
  done
  echo "Braid ($n nodes) did not come up; see $WORK/braid$n-*.log" >&2
  exit 1
}

# Starts a system (zk1, zk3, braid1, braid3) and sets CONNECT to its connect string.
start_system() {
  case "$1" in
    zk*)
      ZK_DIRS+=("$WORK/$1")
      CONNECT=$("$ROOT/perf/zk-anchor.sh" start "${1#zk}" "$WORK/$1" "$ZK_PORT")
      ;;
    braid*) start_braid "${1#braid}" ;;
    *) echo "unknown system $1 (zk1, zk3, braid1, braid3)" >&2; exit 2 ;;
  esac
}

workload_args() {
  case "$1" in
    set) echo "--mix set=1 --keys $KEYS" ;;
    create) echo "--mix create=1 --keys $KEYS" ;;
    read) echo "--mix get=9,set=1 --keys $KEYS" ;;
    get) echo "--mix get=1 --keys $KEYS" ;;
    rate) echo "--mix set=1 --rate $RATE --keys $KEYS" ;;
    watch) echo "--mix set=1 --rate $RATE --keys 100 --watchers $WATCHERS" ;;
    *) echo "unknown workload $1" >&2; exit 2 ;;
  esac
}

# The disk under the data: its I/O counters go into each run's JSON (the whole device's, so
# anything else on the machine counts too).
DISK=$(basename "$(df --output=source "$WORK" | tail -1)")
disk_stat() { cat "/sys/block/$DISK/stat" 2>/dev/null || echo ""; }

for system in $SYSTEMS; do
  echo "== $system" >&2
  start_system "$system"
  # ZooKeeper's JIT and Braid's first segments: a short warm-up outside the figures.
  if ! "$BRAID" bench zk --servers "$CONNECT" --sessions "$SESSIONS" --mix set=1,get=1 --seconds 2 \
    >"$WORK/warmup-$system.log" 2>&1; then
    echo "the warm-up against $system failed:" >&2
    cat "$WORK/warmup-$system.log" >&2
    exit 1
  fi
  for workload in $WORKLOADS; do
    json="$OUT/$system-$workload.json"
    if [ "$workload" = failover ]; then
      if [ "${system: -1}" = 3 ]; then
        python3 "$ROOT/perf/zk_failover.py" "$CONNECT" --kills "$KILLS" --json "$json" --label "$system failover: " \
          --log-dir "$WORK"
      fi
      continue
    fi
    before=$(disk_stat)
    # shellcheck disable=SC2046 # the workload's flags split on purpose
    "$BRAID" bench zk --servers "$CONNECT" --sessions "$SESSIONS" --in-flight "$IN_FLIGHT" \
      --seconds "$SECONDS_PER_RUN" --data-bytes "$DATA_BYTES" $(workload_args "$workload") \
      --label "$system $workload" --json "$json" | sed "s/^/$system $workload: /"
    after=$(disk_stat)
    python3 - "$json" "$before" "$after" <<'PY'
import json, sys
path, before, after = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
if len(before) >= 17 and len(after) >= 17:
    d = lambda i: int(after[i]) - int(before[i])
    run = json.load(open(path))
    run["disk"] = {"reads": d(0), "writes": d(4), "flushes": d(15), "note": "whole device, during the run and its setup"}
    json.dump(run, open(path, "w"), indent=2)
PY
  done
  stop_all
done

python3 "$ROOT/perf/zk_compare_summary.py" "$OUT" "$ROOT" "$SYSTEMS" "$WORKLOADS" "$NAME"
