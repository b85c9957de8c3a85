#!/usr/bin/env bash
# perf/ab-bench.sh — two braid binaries (or two settings of one) under the same `braid bench`
# load, alternated, a fresh node each run, so that both meet the same minutes of this machine's
# disk and CPU. Prints one line per run: the bench's summary and the device's busy time.
#
# Usage (from the repository root):
#   perf/ab-bench.sh [--reps N] A B -- BENCH_ARGS...
# A and B are braid binaries, each optionally followed by environment settings for its node
# after a colon ("target/release/braid:BRAID_LOG=debug"). BENCH_ARGS go to `braid bench`
# (produce, consume or zk ...); the node's addresses are filled in (BRAID_BOOTSTRAP, and
# --servers for zk). Default 3 repetitions. Node flags: NODE_ARGS (env). GENERATOR (env): the
# braid binary that runs the bench for both (default: each variant's own), so that only the
# nodes differ.
# Examples:
#   cp target/release/braid /tmp/braid-old   # before the change, then rebuild
#   perf/ab-bench.sh /tmp/braid-old target/release/braid -- produce --partitions 1 --producers 1 \
#     --batch-records 1000 --in-flight 32 --messages 4000000
#   perf/ab-bench.sh /tmp/braid-old target/release/braid -- zk --seconds 5 --mix set=1
set -euo pipefail

REPS=3
if [ "${1:-}" = "--reps" ]; then
  REPS="$2"
  shift 2
fi
[ $# -ge 3 ] && [ "$3" = "--" ] || { sed -n '2,18p' "$0" >&2; exit 2; }
VARIANTS=("$1" "$2")
shift 3
BENCH=("$@")
DIR="$(mktemp -d)"
PORT=$((22000 + RANDOM % 4000))
NODE=""
trap '[ -n "$NODE" ] && kill "$NODE" 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"' EXIT

disk_busy_ms() { awk '{print $10}' "/sys/block/$(basename "$(df --output=source "$DIR" | tail -1)")/stat" 2>/dev/null || echo 0; }

for rep in $(seq 1 "$REPS"); do
  for variant in "${VARIANTS[@]}"; do
    binary="${variant%%:*}"
    settings=()
    [ "$variant" != "$binary" ] && read -r -a settings <<<"${variant#*:}"
    rm -rf "$DIR/node"
    env "${settings[@]}" "$binary" start --data-dir "$DIR/node" --kafka-addr "127.0.0.1:$PORT" \
      --zk-addr "127.0.0.1:$((PORT + 1))" --admin-addr "127.0.0.1:$((PORT + 2))" \
      --raft-addr "127.0.0.1:$((PORT + 3))" ${NODE_ARGS:-} >"$DIR/node.log" 2>&1 &
    NODE=$!
    export BRAID_BOOTSTRAP="127.0.0.1:$PORT"
    for _ in $(seq 1 200); do "$binary" cluster status >/dev/null 2>&1 && break; sleep 0.05; done
    args=("${BENCH[@]}")
    [ "${BENCH[0]}" = zk ] && args+=(--servers "127.0.0.1:$((PORT + 1))")
    before=$(disk_busy_ms)
    summary=$("${GENERATOR:-$binary}" bench "${args[@]}" 2>&1 | grep -E '^(produce|consume|zk):|latency us' | tr '\n' ' ')
    after=$(disk_busy_ms)
    echo "$variant r$rep: $summary| disk busy $((after - before)) ms"
    kill "$NODE"
    wait "$NODE" 2>/dev/null || true
    NODE=""
  done
done
