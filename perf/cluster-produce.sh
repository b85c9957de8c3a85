#!/usr/bin/env bash
# perf/cluster-produce.sh — produce throughput of kcat (librdkafka) with acks=all, 1 KiB records,
# into one partition: a single node, or NODES nodes on this machine with replication factor NODES.
#
# Usage (from the repository root):  perf/cluster-produce.sh [NODES] [MIB]
#   NODES: 1 or 3 (default 3); MIB: data to send, in MiB of 1 KiB records (default 1024).
# Needs kcat and a release build (built here). Prints one line: nodes, bytes, seconds, MB/s.
# With PERF_RECORD=1, `perf record -a -g` runs during the produce (perf/out/cluster-produce.data).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODES="${1:-3}"
MIB="${2:-1024}"
OUT="$ROOT/perf/out/cluster-produce"
cd "$ROOT"
cargo build --release -q -p braid
BRAID="$ROOT/target/release/braid"

rm -rf "$OUT" && mkdir -p "$OUT"
DATA="$OUT/records.txt"
python3 - "$DATA" "$MIB" <<'PY'
import sys
line = ("x" * 1023 + "\n").encode()
with open(sys.argv[1], "wb") as f:
    for _ in range(int(sys.argv[2]) * 1024):
        f.write(line)
PY

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
BASE=$((21000 + RANDOM % 5000))
PEERS=""
for i in $(seq 1 "$NODES"); do PEERS="$PEERS${PEERS:+,}$i@127.0.0.1:$((BASE + 10 + i))"; done
for i in $(seq 1 "$NODES"); do
  ARGS=(start --data-dir "$OUT/node$i" --kafka-addr "127.0.0.1:$((BASE + i))" --admin-addr "127.0.0.1:$((BASE + 20 + i))" --zk-addr "127.0.0.1:$((BASE + 40 + i))" --cores 1)
  if [ "$NODES" -gt 1 ]; then ARGS+=(--node-id "$i" --peers "$PEERS"); fi
  "$BRAID" "${ARGS[@]}" >"$OUT/node$i.log" 2>&1 &
  PIDS+=($!)
done
BOOT="127.0.0.1:$((BASE + 1))"
for _ in $(seq 1 100); do
  BRAID_BOOTSTRAP=$BOOT "$BRAID" topic create perf --partitions 1 --replication-factor "$NODES" >/dev/null 2>&1 && break
  sleep 0.2
done
# Wait for the partition's leader.
for _ in $(seq 1 100); do
  BRAID_BOOTSTRAP=$BOOT "$BRAID" cluster status 2>/dev/null | grep -q "partition perf-0 leader [1-9]" && break
  sleep 0.2
done

if [ "${PERF_RECORD:-0}" = 1 ]; then
  perf record -a ${PERF_ARGS:--g} -o "$OUT/../cluster-produce.data" -- sleep 8 >/dev/null 2>&1 &
  PERF_PID=$!
fi
START=$(date +%s.%N)
kcat -b "$BOOT" -P -t perf -p 0 -X acks=all -X linger.ms=10 -X batch.size=1048576 \
  -X queue.buffering.max.messages=1000000 -X queue.buffering.max.kbytes=1048576 -l "$DATA"
END=$(date +%s.%N)
if [ "${PERF_RECORD:-0}" = 1 ]; then wait "$PERF_PID" || true; fi
BYTES=$((MIB * 1024 * 1024))
python3 -c "import sys; b=$BYTES; s=$END-$START; print(f'nodes $NODES bytes {b} seconds {s:.2f} MB/s {b/s/1e6:.1f}')"
