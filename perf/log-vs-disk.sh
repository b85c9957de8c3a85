#!/usr/bin/env bash
# perf/log-vs-disk.sh — the partition log's append throughput against this disk's limits, in one
# run: fio (perf/disk-limit.sh) on the disk holding the data directory, then the criterion
# benchmark `log_append` writing to the same disk, then the ratios.
#
# Usage (from the repository root):  perf/log-vs-disk.sh [DATA_DIR]   (default ./perf/out/disk)
# Output: a summary on stdout and perf/out/log-vs-disk.json; with SAVE_BASELINE=1 the JSON is
# also copied to perf/baselines/log-vs-disk-YYYY-MM-DD.json. Takes about 5 minutes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_DIR="${1:-$ROOT/perf/out/disk}"
mkdir -p "$DATA_DIR" "$ROOT/perf/out"
cd "$ROOT"

"$ROOT/perf/disk-limit.sh" "$DATA_DIR"
BRAID_BENCH_DIR="$DATA_DIR/bench" cargo bench -p braid-benches --bench log_append -- --noplot
rm -rf "$DATA_DIR/bench"

python3 - "$ROOT" <<'PY'
import json, sys, os, datetime
root = sys.argv[1]
disk = json.load(open(os.path.join(root, "perf/out/disk-limit.json")))
def mean_ns(group, name):
    path = os.path.join(root, "target/criterion", group, name, "new/estimates.json")
    return json.load(open(path))["mean"]["point_estimate"]
MIB = 1 << 20
seq = {}
for mode in ("direct", "buffered"):
    ns = mean_ns("sequential_1mib_sync_every_16mib", mode)
    seq[mode] = 16 * MIB / (ns / 1e9) / 1e6  # MB/s, decimal, like fio
durable_64 = 64 / (mean_ns("durable_1kib", "appenders_64") / 1e9)
durable_1 = 1 / (mean_ns("durable_1kib", "appenders_1") / 1e9)
fio_direct = disk["seq_write_direct_mb_s"]
result = {
    "date": datetime.date.today().isoformat(),
    "fio_seq_write_direct_mb_s": fio_direct,
    "fio_seq_write_buffered_sync16_mb_s": disk["seq_write_buffered_sync16_mb_s"],
    "fio_fdatasync_p50_us": disk["fdatasync_p50_us"],
    "log_seq_append_direct_mb_s": round(seq["direct"], 1),
    "log_seq_append_buffered_mb_s": round(seq["buffered"], 1),
    "log_seq_direct_vs_fio_direct": round(seq["direct"] / fio_direct, 3),
    "log_durable_1kib_appends_per_s_64_appenders": round(durable_64),
    "log_durable_1kib_appends_per_s_1_appender": round(durable_1),
    "group_commit_gain": round(durable_64 / durable_1, 1),
}
out = os.path.join(root, "perf/out/log-vs-disk.json")
json.dump(result, open(out, "w"), indent=2)
print()
print(f"fio O_DIRECT sequential write:          {fio_direct:8.1f} MB/s")
print(f"log append 1 MiB, sync/16 MiB, direct:  {seq['direct']:8.1f} MB/s  ({100*seq['direct']/fio_direct:.0f}% of fio)")
print(f"log append 1 MiB, sync/16 MiB, buffered:{seq['buffered']:8.1f} MB/s  ({100*seq['buffered']/fio_direct:.0f}% of fio)")
print(f"durable 1 KiB appends, 64 appenders:    {durable_64:8.0f} /s")
print(f"durable 1 KiB appends, 1 appender:      {durable_1:8.0f} /s  (group commit gain {durable_64/durable_1:.1f}x)")
print(f"JSON: {out}")
if os.environ.get("SAVE_BASELINE"):
    import shutil
    dest = os.path.join(root, "perf/baselines", f"log-vs-disk-{result['date']}.json")
    shutil.copy(out, dest)
    print(f"baseline saved: {dest}")
PY
