#!/usr/bin/env bash
# perf/disk-limit.sh — measure this machine's raw disk limits, so Braid's
# produce/commit throughput and fsync-bound latencies can be judged against
# what the hardware can actually do.
#
# What it measures (on the filesystem/disk holding DATA_DIR), using fio:
#   1. Sequential write, O_DIRECT, 1 MiB blocks, iodepth 4 (io_uring; falls
#      back to libaio, then psync), SIZE bytes, end_fsync=1   -> MB/s
#   2. Sequential write, buffered, 1 MiB blocks, fdatasync every 16 blocks
#      (fdatasync=16), SIZE bytes                             -> MB/s
#   3. fdatasync latency: 4 KiB sequential buffered writes, fdatasync after
#      every write (fdatasync=1), bounded by SYNC_RUNTIME seconds or SYNC_IOS
#      writes, whichever comes first -> p50/p99/p99.9 sync latency (us), writes/s
#   4. Second opinion: dd if=/dev/zero bs=1M count=1024 oflag=direct -> MB/s
# MB/s is decimal (10^6 bytes per second).
#
# Output: a short human summary on stdout, and JSON at perf/out/disk-limit.json
# (keys: seq_write_direct_mb_s, seq_write_buffered_sync16_mb_s,
#  fdatasync_p50_us, fdatasync_p99_us, fdatasync_p999_us,
#  fdatasync_writes_per_s, dd_direct_mb_s, fio_version, device info, ...).
# Test files are removed at the end (also on error / Ctrl-C).
#
# Usage (from the repository root):
#   perf/disk-limit.sh [DATA_DIR]        # default DATA_DIR: ./perf/out/disk
#   SIZE=4G perf/disk-limit.sh /mnt/data # bigger sequential runs
# Environment overrides:
#   SIZE          size of each sequential-write run (fio syntax, default 2G)
#   SEQ_RUNTIME   time cap in seconds for each sequential run (default 120)
#   SYNC_RUNTIME  time cap in seconds for the fdatasync run (default 10)
#   SYNC_IOS      write-count cap for the fdatasync run (default 20000)
#   SKIP_DD=1     skip the dd second opinion
# Needs fio (installed via apt-get if missing and running as root) and python3.
# Takes roughly 1-3 minutes on a typical VM disk. Needs ~SIZE free space.

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
OUT_DIR="$SCRIPT_DIR/out"
OUT_JSON="$OUT_DIR/disk-limit.json"

DATA_DIR="${1:-$REPO_ROOT/perf/out/disk}"
SIZE="${SIZE:-2G}"
SEQ_RUNTIME="${SEQ_RUNTIME:-120}"
SYNC_RUNTIME="${SYNC_RUNTIME:-10}"
SYNC_IOS="${SYNC_IOS:-20000}"
SKIP_DD="${SKIP_DD:-0}"

log() { printf '[disk-limit] %s\n' "$*" >&2; }

# --- prerequisites -----------------------------------------------------------
if ! command -v fio >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "fio not found; installing with apt-get"
        apt-get install -y fio >/dev/null || { apt-get update >/dev/null && apt-get install -y fio >/dev/null; }
    else
        log "fio not found and cannot install it (need root + apt-get). Install fio and retry."
        exit 1
    fi
fi
command -v python3 >/dev/null 2>&1 || { log "python3 is required"; exit 1; }

mkdir -p "$DATA_DIR" "$OUT_DIR"
DATA_DIR="$(cd "$DATA_DIR" && pwd)"

# Free-space sanity check (need SIZE plus some headroom).
size_bytes="$(python3 - "$SIZE" <<'PY'
import re, sys
s = sys.argv[1].strip()
m = re.fullmatch(r'(\d+)([kKmMgGtT]?)(i?[bB])?', s)
if not m:
    sys.exit("cannot parse SIZE=%r" % s)
mult = {'': 1, 'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30, 't': 1 << 40}[m.group(2).lower()]
print(int(m.group(1)) * mult)
PY
)"
avail_bytes="$(df -B1 --output=avail "$DATA_DIR" | tail -n1 | tr -d ' ')"
if [ "$avail_bytes" -lt $(( size_bytes + size_bytes / 5 + (1 << 30) )) ]; then
    log "not enough free space in $DATA_DIR: need ~$(( size_bytes >> 20 )) MiB + headroom, have $(( avail_bytes >> 20 )) MiB"
    exit 1
fi

TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/disk-limit.XXXXXX")"
TEST_FILES=(
    "$DATA_DIR/disk-limit.seq-direct.dat"
    "$DATA_DIR/disk-limit.seq-buffered.dat"
    "$DATA_DIR/disk-limit.fdatasync.dat"
    "$DATA_DIR/disk-limit.dd.dat"
)
cleanup() {
    rm -f "${TEST_FILES[@]}"
    rm -rf "$TMP_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FIO_VERSION="$(fio --version)"
log "fio: $FIO_VERSION; data dir: $DATA_DIR; SIZE=$SIZE"

# run_fio NAME OUTJSON ARGS... : returns non-zero if fio fails or the job reports an error.
run_fio() {
    local name="$1" out="$2"; shift 2
    if ! fio --name="$name" --output-format=json --output="$out" "$@" >"$TMP_DIR/$name.stderr" 2>&1; then
        return 1
    fi
    python3 - "$out" <<'PY'
import json, sys
with open(sys.argv[1]) as f:
    txt = f.read()
# fio may prepend non-JSON notes; start at the first '{'.
d = json.loads(txt[txt.index('{'):])
sys.exit(1 if d["jobs"][0].get("error", 0) else 0)
PY
}

# --- 1. sequential write, O_DIRECT, io_uring (fallback libaio/psync) --------
DIRECT_ENGINE=""
for engine in io_uring libaio psync; do
    log "1/4 sequential O_DIRECT write, bs=1M iodepth=4 ioengine=$engine size=$SIZE"
    rm -f "${TEST_FILES[0]}"
    if run_fio seq_direct "$TMP_DIR/seq_direct.json" \
        --filename="${TEST_FILES[0]}" --rw=write --bs=1M --iodepth=4 \
        --ioengine="$engine" --direct=1 --size="$SIZE" --end_fsync=1 \
        --runtime="$SEQ_RUNTIME" --group_reporting; then
        DIRECT_ENGINE="$engine"
        break
    fi
    log "   ioengine=$engine failed: $(tail -n 3 "$TMP_DIR/seq_direct.stderr" | tr '\n' ' ')"
done
if [ -z "$DIRECT_ENGINE" ]; then
    log "all ioengines failed for the O_DIRECT run"
    exit 1
fi
rm -f "${TEST_FILES[0]}"

# --- 2. sequential write, buffered, fdatasync every 16 blocks --------------
log "2/4 sequential buffered write, bs=1M fdatasync=16 size=$SIZE"
if ! run_fio seq_buffered "$TMP_DIR/seq_buffered.json" \
    --filename="${TEST_FILES[1]}" --rw=write --bs=1M --ioengine=psync \
    --direct=0 --size="$SIZE" --fdatasync=16 --end_fsync=1 \
    --runtime="$SEQ_RUNTIME"; then
    log "buffered run failed: $(tail -n 5 "$TMP_DIR/seq_buffered.stderr" | tr '\n' ' ')"
    exit 1
fi
rm -f "${TEST_FILES[1]}"

# --- 3. fdatasync latency: 4 KiB writes, fdatasync after each -------------
log "3/4 fdatasync latency, bs=4k fdatasync=1 (<= ${SYNC_RUNTIME}s or ${SYNC_IOS} writes)"
if ! run_fio fdatasync "$TMP_DIR/fdatasync.json" \
    --filename="${TEST_FILES[2]}" --rw=write --bs=4k --ioengine=psync \
    --direct=0 --size=$(( SYNC_IOS * 4 ))k --number_ios="$SYNC_IOS" \
    --fdatasync=1 --runtime="$SYNC_RUNTIME" \
    --percentile_list=50:99:99.9; then
    log "fdatasync run failed: $(tail -n 5 "$TMP_DIR/fdatasync.stderr" | tr '\n' ' ')"
    exit 1
fi
rm -f "${TEST_FILES[2]}"

# --- 4. dd second opinion ---------------------------------------------------
DD_OUT="$TMP_DIR/dd.txt"
: >"$DD_OUT"
if [ "$SKIP_DD" != "1" ]; then
    log "4/4 dd if=/dev/zero bs=1M count=1024 oflag=direct"
    if ! LC_ALL=C timeout 300 dd if=/dev/zero of="${TEST_FILES[3]}" bs=1M count=1024 oflag=direct 2>"$DD_OUT"; then
        log "dd failed: $(tr '\n' ' ' <"$DD_OUT")"
        : >"$DD_OUT"
    fi
    rm -f "${TEST_FILES[3]}"
fi

# --- device / filesystem info ------------------------------------------------
DF_LINE="$(df -P -T "$DATA_DIR" | tail -n1)"
FINDMNT_LINE="$(findmnt -n -o SOURCE,FSTYPE,TARGET,OPTIONS -T "$DATA_DIR" 2>/dev/null | head -n1 || true)"

# --- summarise ---------------------------------------------------------------
export FIO_VERSION DIRECT_ENGINE DATA_DIR SIZE DF_LINE FINDMNT_LINE SYNC_RUNTIME SYNC_IOS
python3 - "$TMP_DIR" "$DD_OUT" "$OUT_JSON" <<'PY'
import datetime, json, os, re, socket, sys

tmp, dd_path, out_path = sys.argv[1:4]

def load(name):
    with open(os.path.join(tmp, name + ".json")) as f:
        txt = f.read()
    return json.loads(txt[txt.index('{'):])["jobs"][0]

def mb_s(job):
    return round(job["write"]["bw_bytes"] / 1e6, 1)

def pct(lat, key):
    p = lat.get("percentile", {})
    for k, v in p.items():
        if abs(float(k) - key) < 1e-6:
            return round(v / 1000.0, 1)
    return None

direct = load("seq_direct")
buffered = load("seq_buffered")
sync = load("fdatasync")
sync_lat = sync["sync"]["lat_ns"]

dd_mb_s = None
dd_txt = open(dd_path).read()
m = re.search(r'(\d+) bytes .*copied, ([\d.]+) s', dd_txt)
if m and float(m.group(2)) > 0:
    dd_mb_s = round(int(m.group(1)) / float(m.group(2)) / 1e6, 1)

df = os.environ["DF_LINE"].split()
fm = os.environ.get("FINDMNT_LINE", "").split()
device = df[0] if df else None
rotational = None
if device and device.startswith("/dev/"):
    base = os.path.basename(os.path.realpath(device))
    for cand in (base, re.sub(r'p?\d+$', '', base)):
        try:
            rotational = open(f"/sys/block/{cand}/queue/rotational").read().strip() == "1"
            break
        except OSError:
            pass

res = {
    "seq_write_direct_mb_s": mb_s(direct),
    "seq_write_buffered_sync16_mb_s": mb_s(buffered),
    "fdatasync_p50_us": pct(sync_lat, 50.0),
    "fdatasync_p99_us": pct(sync_lat, 99.0),
    "fdatasync_p999_us": pct(sync_lat, 99.9),
    "fdatasync_writes_per_s": round(sync["write"]["iops"], 1),
    "dd_direct_mb_s": dd_mb_s,
    "fio_version": os.environ["FIO_VERSION"],
    "seq_write_direct_ioengine": os.environ["DIRECT_ENGINE"],
    "seq_write_direct_bytes": direct["write"]["io_bytes"],
    "seq_write_buffered_bytes": buffered["write"]["io_bytes"],
    "fdatasync_writes": sync["write"]["total_ios"],
    "fdatasync_mean_us": round(sync_lat["mean"] / 1000.0, 1),
    "fdatasync_max_us": round(sync_lat["max"] / 1000.0, 1),
    "size": os.environ["SIZE"],
    "data_dir": os.environ["DATA_DIR"],
    "device": device,
    "filesystem": df[1] if len(df) > 1 else None,
    "mountpoint": df[-1] if df else None,
    "mount_options": fm[3] if len(fm) > 3 else None,
    "rotational": rotational,
    "df": os.environ["DF_LINE"],
    "findmnt": os.environ.get("FINDMNT_LINE", ""),
    "hostname": socket.gethostname(),
    "nproc": os.cpu_count(),
    "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
}
with open(out_path, "w") as f:
    json.dump(res, f, indent=2)
    f.write("\n")

print(f"Disk limits for {res['data_dir']} ({res['device']}, {res['filesystem']}, {res['fio_version']})")
print(f"  seq write O_DIRECT 1M qd4 ({res['seq_write_direct_ioengine']}): {res['seq_write_direct_mb_s']} MB/s")
print(f"  seq write buffered 1M fdatasync/16:   {res['seq_write_buffered_sync16_mb_s']} MB/s")
print(f"  fdatasync 4k (each write synced):     p50 {res['fdatasync_p50_us']} us, "
      f"p99 {res['fdatasync_p99_us']} us, p99.9 {res['fdatasync_p999_us']} us, "
      f"{res['fdatasync_writes_per_s']} writes/s ({res['fdatasync_writes']} writes)")
print(f"  dd 1M x1024 oflag=direct:             {res['dd_direct_mb_s']} MB/s")
print(f"JSON written to {out_path}")
PY
