#!/bin/bash
# Time for a node whose disk was replaced to rebuild its replicas and metadata tree (decision
# 0012), while the cluster serves: three release nodes on this host, a topic of PARTITIONS
# partitions (RF=3) holding about GB gigabytes, ZNODES znodes in the tree; node 3 is killed,
# its data directory deleted, and it is started again under its id. Prints the seconds until
# it serves ZooKeeper and Kafka again and until every replica of it has caught up (no
# partition rejoining, its high watermarks equal to node 1's).
#
# usage: perf/replace-disk.sh [GB=1] [PARTITIONS=4] [ZNODES=10000]
# Uses ports 2919x-2996x and /tmp/replace-disk (deleted at the end).
set -euo pipefail
GB=${1:-1}; PARTITIONS=${2:-4}; ZNODES=${3:-10000}
ROOT=/tmp/replace-disk
BRAID=${BRAID:-./target/release/braid}
PEERS=1@127.0.0.1:29101,2@127.0.0.1:29102,3@127.0.0.1:29103
rm -rf $ROOT; mkdir -p $ROOT
start() {
  $BRAID start --node-id $1 --peers $PEERS --kafka-addr 127.0.0.1:2909$1 --zk-addr 127.0.0.1:2918$1 \
    --admin-addr 127.0.0.1:2964$1 --data-dir $ROOT/n$1 --cores 2 >> $ROOT/log$1 2>&1 &
  echo $! > $ROOT/pid$1
}
stop_all() {
  for i in 1 2 3; do kill $(cat $ROOT/pid$i) 2>/dev/null || true; done
  # A stopping node flushes: wait (10 s at most) until every one is gone, then delete.
  for _ in $(seq 100); do
    alive=0; for i in 1 2 3; do kill -0 $(cat $ROOT/pid$i) 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.1
  done
  rm -rf $ROOT
}
trap stop_all EXIT
for i in 1 2 3; do start $i; done
BOOT=127.0.0.1:29091,127.0.0.1:29092,127.0.0.1:29093
until $BRAID topic create rd --partitions $PARTITIONS --replication-factor 3 --bootstrap $BOOT >/dev/null 2>&1; do sleep 0.5; done
MESSAGES=$(( GB * 1000000 ))
$BRAID bench produce --bootstrap $BOOT --topic rd --partitions $PARTITIONS --replication-factor 3 \
  --producers 2 --record-size 1000 --batch-records 100 --messages $MESSAGES >/dev/null 2>&1
python3 - "$ZNODES" <<'PY'
import sys
from kazoo.client import KazooClient
zk = KazooClient(hosts="127.0.0.1:29181,127.0.0.1:29182", timeout=10); zk.start(timeout=30)
zk.ensure_path("/rd")
for i in range(int(sys.argv[1])):
    zk.create_async(f"/rd/n{i}", b"x" * 100)
zk.sync("/rd"); zk.stop()
PY
du -sh $ROOT/n3 | sed 's/^/node 3 held: /'
kill -9 $(cat $ROOT/pid3); sleep 0.5; rm -rf $ROOT/n3
T0=$(date +%s.%N); start 3
status() { curl -s http://127.0.0.1:2964$1/v1/status; }
until status 3 | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("serving") else 1)' 2>/dev/null; do sleep 0.1; done
T1=$(date +%s.%N)
until python3 - <<PY
import json, urllib.request
def st(i): return json.load(urllib.request.urlopen(f"http://127.0.0.1:2964{i}/v1/status"))
mine = {(p["topic"], p["partition"]): p for p in st(3)["partitions"] if p["topic"] == "rd"}
ref = {(p["topic"], p["partition"]): p for p in st(1)["partitions"] if p["topic"] == "rd"}
ok = len(mine) == $PARTITIONS and all(not p["rejoining"] and p["high_watermark"] == ref[k]["high_watermark"] for k, p in mine.items())
raise SystemExit(0 if ok else 1)
PY
do sleep 0.2; done
T2=$(date +%s.%N)
du -sh $ROOT/n3 | sed 's/^/node 3 rebuilt: /'
python3 -c "print(f'serving again after {$T1-$T0:.1f} s; every replica caught up after {$T2-$T0:.1f} s')"
