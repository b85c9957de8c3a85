#!/usr/bin/env bash
# perf/compare-kafka-limit.sh — Braid's produce and consume throughput next to this machine's
# limits, in one run: fio on the data disk (perf/disk-limit.sh), loopback TCP bandwidth
# (perf/loopback-limit.py), then one fresh node (release build, default shards) driven by
# `braid bench`: acks=all produce of 1 KiB records to 4 partitions from 4 producers, then the
# same records consumed back twice: from the disk, then from the page cache; then the same
# produce into three nodes with replication factor 3 (perf/cluster-produce.sh), and fio once
# more, as the disk's speed moves between minutes. Prints the ratios and writes
# perf/out/compare-kafka-limit.json (with SAVE_BASELINE=1 also
# perf/baselines/compare-kafka-limit-YYYY-MM-DD.json).
#
# Usage (from the repository root):  perf/compare-kafka-limit.sh [DATA_DIR] [MESSAGES]
#   DATA_DIR defaults to ./perf/out/kafka-limit; MESSAGES (1 KiB each) to 2000000.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_DIR="${1:-$ROOT/perf/out/kafka-limit}"
MESSAGES="${2:-2000000}"
OUT="$ROOT/perf/out"
cd "$ROOT"
mkdir -p "$DATA_DIR" "$OUT"
cargo build --release -q -p braid
BRAID="$ROOT/target/release/braid"

"$ROOT/perf/disk-limit.sh" "$DATA_DIR/fio"
python3 "$ROOT/perf/loopback-limit.py" "$OUT/loopback-limit.json"

rm -rf "$DATA_DIR/node"
PORT=$((21000 + RANDOM % 5000))
"$BRAID" start --data-dir "$DATA_DIR/node" --kafka-addr "127.0.0.1:$PORT" --admin-addr "127.0.0.1:$((PORT + 1))" --zk-addr "127.0.0.1:$((PORT + 2))" \
  >"$OUT/compare-kafka-limit-node.log" 2>&1 &
NODE=$!
trap 'kill $NODE 2>/dev/null || true; wait 2>/dev/null || true' EXIT
export BRAID_BOOTSTRAP="127.0.0.1:$PORT"
for _ in $(seq 1 100); do "$BRAID" cluster status >/dev/null 2>&1 && break; sleep 0.1; done
"$BRAID" bench produce --topic limit --partitions 4 --producers 4 --batch-records 1000 \
  --messages "$MESSAGES" --json "$OUT/bench-produce.json"
# The first read comes from the disk (the log writes with O_DIRECT, past the page cache); the
# second from the page cache.
"$BRAID" bench consume --topic limit --messages "$MESSAGES" --json "$OUT/bench-consume-cold.json"
"$BRAID" bench consume --topic limit --messages "$MESSAGES" --json "$OUT/bench-consume.json"
kill $NODE 2>/dev/null || true
wait $NODE 2>/dev/null || true
# Three nodes on this machine, replication factor 3, each with its default shards: the same
# produce (braid bench, 4 partitions, 4 producers), every byte written three times to the one
# disk. Then fio again: the virtual disk's speed moves between minutes, so the ratios are
# given against both measurements.
CORES=2 CLIENT=bench PARTITIONS=4 BRAID="$BRAID" "$ROOT/perf/cluster-produce.sh" 3 $((MESSAGES / 1024))
cp "$OUT/cluster-produce/bench.json" "$OUT/bench-produce-rf3.json"
cp "$OUT/disk-limit.json" "$OUT/disk-limit-before.json"
"$ROOT/perf/disk-limit.sh" "$DATA_DIR/fio"
cp "$OUT/disk-limit.json" "$OUT/disk-limit-after.json"

python3 - "$OUT" "$ROOT" <<'PY'
import datetime, json, os, shutil, sys
out, root = sys.argv[1], sys.argv[2]
load = lambda name: json.load(open(os.path.join(out, name)))
disk, lo = load("disk-limit-before.json"), load("loopback-limit.json")
fio_after = load("disk-limit-after.json")["seq_write_direct_mb_s"]
produce, consume, cold = load("bench-produce.json"), load("bench-consume.json"), load("bench-consume-cold.json")
rf3 = load("bench-produce-rf3.json")
fio = disk["seq_write_direct_mb_s"]
result = {
    "date": datetime.date.today().isoformat(),
    "fio_seq_write_direct_mb_s": fio,
    "fio_seq_write_direct_after_mb_s": fio_after,
    "produce_rf3_mb_s": round(rf3["mb_per_s"], 1),
    "produce_rf3_latency_us": rf3["latency_us"],
    "produce_rf3_vs_fio_third": round(rf3["mb_per_s"] / (fio / 3), 3),
    "produce_rf3_vs_fio_after_third": round(rf3["mb_per_s"] / (fio_after / 3), 3),
    "produce_vs_fio_after": round(produce["mb_per_s"] / fio_after, 3),
    "loopback_mb_s": lo["loopback_mb_s"],
    "produce_acks_all_mb_s": round(produce["mb_per_s"], 1),
    "produce_latency_us": produce["latency_us"],
    "consume_mb_s": round(consume["mb_per_s"], 1),
    "consume_from_disk_mb_s": round(cold["mb_per_s"], 1),
    "produce_vs_fio": round(produce["mb_per_s"] / fio, 3),
    "consume_vs_loopback": round(consume["mb_per_s"] / lo["loopback_mb_s"], 3),
}
path = os.path.join(out, "compare-kafka-limit.json")
json.dump(result, open(path, "w"), indent=2)
print()
print(f"fio O_DIRECT sequential write:   {fio:8.1f} MB/s")
print(f"loopback TCP:                    {lo['loopback_mb_s']:8.1f} MB/s")
print(f"fio again, after the runs:      {fio_after:8.1f} MB/s")
print(f"braid produce, acks=all, 1 KiB:  {produce['mb_per_s']:8.1f} MB/s  = {result['produce_vs_fio']:.0%} / {result['produce_vs_fio_after']:.0%} of fio before / after (target 70%)")
print(f"3 nodes, RF=3, acks=all, 1 KiB:  {rf3['mb_per_s']:8.1f} MB/s  = {result['produce_rf3_vs_fio_third']:.0%} / {result['produce_rf3_vs_fio_after_third']:.0%} of fio/3 before / after (target 60%)")
print(f"braid consume, from the disk:    {cold['mb_per_s']:8.1f} MB/s")
print(f"braid consume, page cache:       {consume['mb_per_s']:8.1f} MB/s  = {result['consume_vs_loopback']:.0%} of loopback (target 2000 MB/s)")
print(f"JSON: {path}")
if os.environ.get("SAVE_BASELINE") == "1":
    base = os.path.join(root, "perf/baselines", f"compare-kafka-limit-{result['date']}.json")
    shutil.copy(path, base)
    print(f"baseline: {base}")
PY
