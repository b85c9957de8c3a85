#!/usr/bin/env bash
# perf/profile.sh — where a node spends its time under a chosen load: a fresh release node,
# `braid bench` driving it, `perf record -g` of the node for the run, and a flame graph
# (perf/flamegraph.py, no other tool needed) plus the top symbols as text. Where perf cannot
# record (no perf, or perf_event_paranoid forbids it), the node runs under valgrind's callgrind
# for a bounded load instead, and callgrind_annotate prints the top functions.
#
# Usage (from the repository root):  perf/profile.sh [produce|consume|zk-set|zk-get] [AMOUNT]
#   produce, consume: AMOUNT records (default 2000000; 1 KiB, acks=all, 4 partitions, 4 producers)
#   zk-set, zk-get: `braid bench zk` for AMOUNT seconds (default 10; 16 sessions, 1000 znodes
#   of 100 bytes, setData or getData only), against a node with one shard, as perf/compare-zk.sh
# Output: perf/out/profile-LOAD.svg and perf/out/profile-LOAD.txt (or profile-LOAD.callgrind).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOAD="${1:-produce}"
case "$LOAD" in
  produce | consume) AMOUNT="${2:-2000000}" NODE_ARGS=() ;;
  zk-set | zk-get) AMOUNT="${2:-10}" NODE_ARGS=(--cores 1) ;;
  *) echo "unknown load $LOAD (produce, consume, zk-set or zk-get)" >&2; exit 2 ;;
esac
OUT="$ROOT/perf/out"
DIR="$OUT/profile-node"
cd "$ROOT"
mkdir -p "$OUT"
cargo build --release -q -p braid
BRAID="$ROOT/target/release/braid"
PORT=$((21000 + RANDOM % 5000))
export BRAID_BOOTSTRAP="127.0.0.1:$PORT"
rm -rf "$DIR"

start_node() {
  "$@" "$BRAID" start --data-dir "$DIR" --kafka-addr "127.0.0.1:$PORT" --admin-addr "127.0.0.1:$((PORT + 1))" --zk-addr "127.0.0.1:$((PORT + 2))" \
    "${NODE_ARGS[@]}" >"$OUT/profile-node.log" 2>&1 &
  NODE=$!
  trap 'kill $NODE 2>/dev/null || true; wait 2>/dev/null || true' EXIT
  for _ in $(seq 1 300); do "$BRAID" cluster status >/dev/null 2>&1 && return; sleep 0.1; done
  echo "the node did not start; see $OUT/profile-node.log" >&2
  exit 1
}

# What must exist before the measured load: records to consume, read once to warm the page
# cache (`braid bench zk` makes its znodes itself before its clock starts).
prepare() {
  local n="$1"
  case "$LOAD" in
    consume)
      "$BRAID" bench produce --topic profile --partitions 4 --producers 4 --batch-records 1000 --messages "$n" >/dev/null
      "$BRAID" bench consume --topic profile --messages "$n" >/dev/null
      ;;
  esac
}

# The measured load.
load() {
  local n="$1"
  case "$LOAD" in
    produce) "$BRAID" bench produce --topic profile --partitions 4 --producers 4 --batch-records 1000 --messages "$n" ;;
    consume) "$BRAID" bench consume --topic profile --messages "$n" ;;
    zk-set) "$BRAID" bench zk --servers "127.0.0.1:$((PORT + 2))" --seconds "$n" --mix set=1 ;;
    zk-get) "$BRAID" bench zk --servers "127.0.0.1:$((PORT + 2))" --seconds "$n" --mix get=1 ;;
  esac
}

if command -v perf >/dev/null && perf record -o /dev/null -- true >/dev/null 2>&1; then
  start_node
  prepare "$AMOUNT"
  perf record -F 999 -g -p "$NODE" -o "$OUT/profile-$LOAD.data" >/dev/null 2>&1 &
  PERF=$!
  sleep 0.5
  load "$AMOUNT"
  kill -INT "$PERF"
  wait "$PERF" || true
  perf script -i "$OUT/profile-$LOAD.data" 2>/dev/null | python3 "$ROOT/perf/flamegraph.py" "braid, $LOAD" >"$OUT/profile-$LOAD.svg"
  perf report -i "$OUT/profile-$LOAD.data" --no-children -g none --sort comm,dso,symbol 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -40 >"$OUT/profile-$LOAD.txt"
  head -20 "$OUT/profile-$LOAD.txt"
  echo "flame graph: $OUT/profile-$LOAD.svg"
else
  command -v valgrind >/dev/null || { echo "neither perf nor valgrind can profile here" >&2; exit 1; }
  start_node valgrind --tool=callgrind --callgrind-out-file="$OUT/profile-$LOAD.callgrind"
  case "$LOAD" in
    zk-*) load 2 ;;
    *) prepare 20000; load 20000 ;;
  esac
  kill -INT "$NODE"
  wait "$NODE" || true
  callgrind_annotate "$OUT/profile-$LOAD.callgrind" 2>/dev/null | head -40
  echo "callgrind output: $OUT/profile-$LOAD.callgrind"
fi
