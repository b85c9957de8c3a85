#!/usr/bin/env bash
# perf/profile.sh — where a node spends its time under a chosen load: a fresh release node,
# `braid bench` driving it, `perf record -g` of the node for the run, and a flame graph
# (perf/flamegraph.py, no other tool needed) plus the top symbols as text. Where perf cannot
# record (no perf, or perf_event_paranoid forbids it), the node runs under valgrind's callgrind
# for a bounded load instead, and callgrind_annotate prints the top functions.
#
# Usage (from the repository root):  perf/profile.sh [produce|consume] [MESSAGES]
#   default: produce 2000000 (1 KiB records, acks=all, 4 partitions, 4 producers)
# Output: perf/out/profile-LOAD.svg and perf/out/profile-LOAD.txt (or profile-LOAD.callgrind).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOAD="${1:-produce}"
MESSAGES="${2:-2000000}"
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
    >"$OUT/profile-node.log" 2>&1 &
  NODE=$!
  trap 'kill $NODE 2>/dev/null || true; wait 2>/dev/null || true' EXIT
  for _ in $(seq 1 300); do "$BRAID" cluster status >/dev/null 2>&1 && return; sleep 0.1; done
  echo "the node did not start; see $OUT/profile-node.log" >&2
  exit 1
}

load() {
  local n="$1"
  if [ "$LOAD" = consume ]; then
    "$BRAID" bench produce --topic profile --partitions 4 --producers 4 --batch-records 1000 --messages "$n" >/dev/null
    "$BRAID" bench consume --topic profile --messages "$n" >/dev/null # warm the page cache
    "$@" "$BRAID" bench consume --topic profile --messages "$n"
  else
    "$@" "$BRAID" bench produce --topic profile --partitions 4 --producers 4 --batch-records 1000 --messages "$n"
  fi
}

if command -v perf >/dev/null && perf record -o /dev/null -- true >/dev/null 2>&1; then
  start_node
  if [ "$LOAD" = consume ]; then
    "$BRAID" bench produce --topic profile --partitions 4 --producers 4 --batch-records 1000 --messages "$MESSAGES" >/dev/null
    "$BRAID" bench consume --topic profile --messages "$MESSAGES" >/dev/null
  fi
  perf record -F 999 -g -p "$NODE" -o "$OUT/profile-$LOAD.data" >/dev/null 2>&1 &
  PERF=$!
  sleep 0.5
  if [ "$LOAD" = consume ]; then
    "$BRAID" bench consume --topic profile --messages "$MESSAGES"
  else
    "$BRAID" bench produce --topic profile --partitions 4 --producers 4 --batch-records 1000 --messages "$MESSAGES"
  fi
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
  load 20000
  kill -INT "$NODE"
  wait "$NODE" || true
  callgrind_annotate "$OUT/profile-$LOAD.callgrind" 2>/dev/null | head -40
  echo "callgrind output: $OUT/profile-$LOAD.callgrind"
fi
