#!/usr/bin/env bash
# perf/produce-vs-disk.sh — one node's acks=all produce against the disk, alternated, so that
# each produce is judged against fio runs taken just before and just after it. This virtual
# disk's speed moves by tens of percent between minutes; a single fio figure beside a single
# produce figure says more about the minute than about the node.
#
# Each round: fio (the disk-limit.sh job: sequential write, O_DIRECT, 1 MiB blocks, iodepth 4,
# io_uring, SIZE, end_fsync), then a fresh release node driven by `braid bench produce`
# (acks=all, 1 KiB records, 4 partitions, one producer each with 8 requests of 1000 records in flight,
# MESSAGES records), then fio with the log's own pattern (4 files written at once, 1 MiB
# blocks, iodepth 8, an fdatasync every 4 MiB: a partition's flush covers about that much at
# this rate). After the last round, fio once more. A produce's ratio is its MB/s over the mean
# of the sequential fio runs before and after it; the summary gives every round and the
# medians.
#
# Usage (from the repository root):  perf/produce-vs-disk.sh [ROUNDS] [MESSAGES]
#   ROUNDS defaults to 5, MESSAGES to 2000000. DATA_DIR (env) defaults to perf/out/produce-vs-disk.
#   PARTITIONS (env, default 4): partitions, one producer each.
#   SAVE_BASELINE=1 also writes perf/baselines/produce-vs-disk-YYYY-MM-DD.json.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS="${1:-5}"
MESSAGES="${2:-2000000}"
DATA_DIR="${DATA_DIR:-$ROOT/perf/out/produce-vs-disk}"
SIZE="${SIZE:-2G}"
PARTITIONS="${PARTITIONS:-4}"
OUT="$ROOT/perf/out"
command -v fio >/dev/null || { echo "fio is needed (apt-get install fio)" >&2; exit 1; }
cd "$ROOT"
rm -rf "$DATA_DIR"
mkdir -p "$DATA_DIR" "$OUT"
cargo build --release -q -p braid
BRAID="${BRAID:-$ROOT/target/release/braid}"
NODE=""
trap '[ -n "$NODE" ] && kill $NODE 2>/dev/null; rm -rf "$DATA_DIR"' EXIT

# fio_mb LABEL ARGS...: runs fio in DATA_DIR, prints MB/s (decimal), removes its files.
fio_mb() {
    local label="$1"; shift
    fio --name="$label" --directory="$DATA_DIR" --rw=write --bs=1M --ioengine=io_uring --direct=1 \
        --group_reporting --output-format=json --output="$DATA_DIR/$label.json" "$@" >/dev/null 2>&1
    rm -f "$DATA_DIR/$label".*.*
    python3 -c "import json,sys; t=open(sys.argv[1]).read(); j=json.loads(t[t.index('{'):]); print(round(j['jobs'][0]['write']['bw_bytes']/1e6, 1))" \
        "$DATA_DIR/$label.json"
}
seq_fio() { fio_mb seq --iodepth=4 --size="$SIZE" --end_fsync=1; }
pattern_fio() { fio_mb pattern --numjobs=4 --iodepth=8 --size=$(( $(numfmt --from=iec "$SIZE") / 4 )) --fdatasync=4; }

produce_mb() {
    rm -rf "$DATA_DIR/node"
    local port=$((21000 + RANDOM % 5000))
    "$BRAID" start --data-dir "$DATA_DIR/node" --kafka-addr "127.0.0.1:$port" --admin-addr "127.0.0.1:$((port + 1))" \
        --zk-addr "127.0.0.1:$((port + 2))" >"$OUT/produce-vs-disk-node.log" 2>&1 &
    NODE=$!
    export BRAID_BOOTSTRAP="127.0.0.1:$port"
    for _ in $(seq 1 100); do "$BRAID" cluster status >/dev/null 2>&1 && break; sleep 0.1; done
    "$BRAID" bench produce --topic limit --partitions "$PARTITIONS" --producers "$PARTITIONS" --batch-records 1000 \
        --messages "$MESSAGES" --json "$DATA_DIR/produce.json" >/dev/null
    kill $NODE; wait $NODE 2>/dev/null || true
    NODE=""
    rm -rf "$DATA_DIR/node"
    python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(round(j['mb_per_s'], 1), j['latency_us']['p50'], j['latency_us']['p99'], j['latency_us']['p999'])" \
        "$DATA_DIR/produce.json"
}

: >"$DATA_DIR/rounds.txt"
for round in $(seq 1 "$ROUNDS"); do
    seq=$(seq_fio)
    read -r mb p50 p99 p999 < <(produce_mb)
    pattern=$(pattern_fio)
    echo "$round $seq $mb $p50 $p99 $p999 $pattern" | tee -a "$DATA_DIR/rounds.txt"
done
echo "end $(seq_fio)" | tee -a "$DATA_DIR/rounds.txt"

PARTITIONS="$PARTITIONS" python3 - "$DATA_DIR/rounds.txt" "$OUT" "$ROOT" <<'PY'
import datetime, json, os, shutil, statistics, sys
lines = [l.split() for l in open(sys.argv[1])]
out, root = sys.argv[2], sys.argv[3]
rounds = [dict(zip(["round", "fio", "produce", "p50_us", "p99_us", "p999_us", "fio_pattern"], map(float, l)))
          for l in lines if l[0] != "end"]
fio_end = float(lines[-1][1])
for i, r in enumerate(rounds):
    after = rounds[i + 1]["fio"] if i + 1 < len(rounds) else fio_end
    r["fio_after"] = after
    r["vs_fio"] = round(r["produce"] / ((r["fio"] + after) / 2), 3)
    r["vs_fio_pattern"] = round(r["produce"] / r["fio_pattern"], 3)
result = {
    "date": datetime.date.today().isoformat(),
    "partitions": int(os.environ.get("PARTITIONS", "4")),
    "rounds": rounds,
    "fio_end_mb_s": fio_end,
    "median_produce_mb_s": statistics.median(r["produce"] for r in rounds),
    "median_fio_mb_s": statistics.median([r["fio"] for r in rounds] + [fio_end]),
    "median_vs_fio": statistics.median(r["vs_fio"] for r in rounds),
    "median_vs_fio_pattern": statistics.median(r["vs_fio_pattern"] for r in rounds),
}
path = os.path.join(out, "produce-vs-disk.json")
json.dump(result, open(path, "w"), indent=2)
print()
print("round  fio before/after MB/s  produce MB/s (p50/p99/p999 ms)  vs fio  fio, log pattern  vs it")
for r in rounds:
    print(f"{int(r['round']):5}  {r['fio']:7.0f} / {r['fio_after']:7.0f}     {r['produce']:7.0f} "
          f"({r['p50_us']/1000:.0f}/{r['p99_us']/1000:.0f}/{r['p999_us']/1000:.0f})"
          f"            {r['vs_fio']:5.0%}  {r['fio_pattern']:12.0f}  {r['vs_fio_pattern']:6.0%}")
print(f"median: produce {result['median_produce_mb_s']:.0f} MB/s, {result['median_vs_fio']:.0%} of the fio runs around it "
      f"(target 70%), {result['median_vs_fio_pattern']:.0%} of fio with the log's pattern")
print(f"JSON: {path}")
if os.environ.get("SAVE_BASELINE") == "1":
    base = os.path.join(root, "perf/baselines", f"produce-vs-disk-{result['date']}.json")
    shutil.copy(path, base)
    print(f"baseline: {base}")
PY
