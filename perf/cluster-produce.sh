#!/usr/bin/env bash
# perf/cluster-produce.sh — produce throughput of kcat (librdkafka) with acks=all, 1 KiB records,
# into one partition: a single node, or NODES nodes on this machine with replication factor NODES.
#
# Usage (from the repository root):  perf/cluster-produce.sh [NODES] [MIB]
#   NODES: 1 or 3 (default 3); MIB: data to send, in MiB of 1 KiB records (default 1024).
# Needs kcat and a release build (built here unless BRAID names a braid binary). Prints one
# line: nodes, bytes, seconds, MB/s.
# With PERF_RECORD=1, `perf record -a -g` runs during the produce (perf/out/cluster-produce.data).
# CLIENT=bench drives the same produce with `braid bench produce` instead of kcat (PARTITIONS
# partitions, default 1; PRODUCERS connections, default 4; 8 requests in flight each; batches of
# 1000 records): kcat's one thread reading lines tops out near 300 MB/s on this machine (98% of
# a core while the nodes were 20-30% busy each), so it measures kcat more than the cluster.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODES="${1:-3}"
MIB="${2:-1024}"
OUT="$ROOT/perf/out/cluster-produce"
cd "$ROOT"
if [ -z "${BRAID:-}" ]; then
  cargo build --release -q -p braid
  BRAID="${CARGO_TARGET_DIR:-$ROOT/target}/release/braid"
fi

rm -rf "$OUT" && mkdir -p "$OUT"
CLIENT="${CLIENT:-kcat}" PARTITIONS="${PARTITIONS:-1}" PRODUCERS="${PRODUCERS:-4}"
DATA="$OUT/records.txt"
if [ "$CLIENT" = kcat ]; then
  python3 - "$DATA" "$MIB" <<'PY'
import sys
line = ("x" * 1023 + "\n").encode()
with open(sys.argv[1], "wb") as f:
    for _ in range(int(sys.argv[2]) * 1024):
        f.write(line)
PY
fi

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
BASE=$((21000 + RANDOM % 5000))
PEERS=""
for i in $(seq 1 "$NODES"); do PEERS="$PEERS${PEERS:+,}$i@127.0.0.1:$((BASE + 10 + i))"; done
CPUS=$(nproc)
for i in $(seq 1 "$NODES"); do
  # Node i's shards are pinned from CPU (i-1) mod CPUS on, so the nodes' first shards (the
  # metadata group) do not all share CPU 0.
  CPUSET=""
  for k in $(seq 0 $((CPUS - 1))); do CPUSET="$CPUSET${CPUSET:+,}$(( (i - 1 + k) % CPUS ))"; done
  ARGS=(start --data-dir "$OUT/node$i" --kafka-addr "127.0.0.1:$((BASE + i))" --admin-addr "127.0.0.1:$((BASE + 20 + i))" --zk-addr "127.0.0.1:$((BASE + 40 + i))" --cores "${CORES:-1}" --cpuset "$CPUSET")
  if [ "$NODES" -gt 1 ]; then ARGS+=(--node-id "$i" --peers "$PEERS"); fi
  "$BRAID" "${ARGS[@]}" >"$OUT/node$i.log" 2>&1 &
  PIDS+=($!)
done
BOOT="127.0.0.1:$((BASE + 1))"
for _ in $(seq 1 100); do
  BRAID_BOOTSTRAP=$BOOT "$BRAID" topic create perf --partitions "$PARTITIONS" --replication-factor "$NODES" >/dev/null 2>&1 && break
  sleep 0.2
done
# Wait for every partition's leader.
for _ in $(seq 1 100); do
  led=$(BRAID_BOOTSTRAP=$BOOT "$BRAID" cluster status 2>/dev/null | grep -c "partition perf-[0-9]* leader [1-9]" || true)
  [ "$led" -ge "$PARTITIONS" ] && break
  sleep 0.2
done

if [ "${PERF_RECORD:-0}" = 1 ]; then
  perf record -a ${PERF_ARGS:--g} -o "$OUT/../cluster-produce.data" -- sleep 8 >/dev/null 2>&1 &
  PERF_PID=$!
fi
START=$(date +%s.%N)
if [ "$CLIENT" = kcat ]; then
  kcat -b "$BOOT" -P -t perf -p 0 -X acks=all -X linger.ms=10 -X batch.size=1048576 \
    -X queue.buffering.max.messages=1000000 -X queue.buffering.max.kbytes=1048576 -l "$DATA"
else
  BRAID_BOOTSTRAP=$BOOT "$BRAID" bench produce --topic perf --partitions "$PARTITIONS" --producers "$PRODUCERS" \
    --batch-records 1000 --in-flight "${IN_FLIGHT:-8}" --messages $((MIB * 1024)) --json "$OUT/bench.json" >"$OUT/bench.txt"
fi
END=$(date +%s.%N)
if [ "${PERF_RECORD:-0}" = 1 ]; then wait "$PERF_PID" || true; fi
BYTES=$((MIB * 1024 * 1024))
python3 -c "import sys; b=$BYTES; s=$END-$START; print(f'nodes $NODES bytes {b} seconds {s:.2f} MB/s {b/s/1e6:.1f}')"
