#!/usr/bin/env bash
# perf/zk-anchor.sh — a real ZooKeeper 3.8 ensemble (Debian's `zookeeper` package) on loopback,
# the anchor every ZooKeeper-protocol figure of Braid's is compared with.
#
# Usage:
#   perf/zk-anchor.sh start [SERVERS] [DIR] [CLIENT_PORT]   # SERVERS 1 or 3 (default 3)
#   perf/zk-anchor.sh stop [DIR]
# Default DIR ./perf/out/zk-anchor, CLIENT_PORT 2181 (server i listens on CLIENT_PORT+i-1).
# Prints the connect string (127.0.0.1:2181,...) once every server answers `ruok` with `imok`
# and the ensemble has a leader. Each server fsyncs every transaction (ZooKeeper's default,
# the same promise Braid makes); logs are in DIR/zkN/server.log.
# Needs: apt-get install zookeeper (Debian 12: 3.8.0) and a Java runtime.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ACTION="${1:-start}"
if [ "$ACTION" = stop ]; then
  DIR="${2:-$ROOT/perf/out/zk-anchor}"
  for pidfile in "$DIR"/zk*/pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  exit 0
fi
SERVERS="${2:-3}"
DIR="${3:-$ROOT/perf/out/zk-anchor}"
CLIENT_PORT="${4:-2181}"
JAR=/usr/share/java/zookeeper.jar
[ -f "$JAR" ] || { echo "no $JAR: apt-get install zookeeper" >&2; exit 1; }
command -v java >/dev/null || { echo "no java on PATH" >&2; exit 1; }
CP="/etc/zookeeper/conf:/usr/share/java/*"

"$0" stop "$DIR"
rm -rf "$DIR"
mkdir -p "$DIR"
CONNECT=""
for i in $(seq 1 "$SERVERS"); do
  d="$DIR/zk$i"
  mkdir -p "$d/data"
  echo "$i" >"$d/data/myid"
  port=$((CLIENT_PORT + i - 1))
  CONNECT="$CONNECT${CONNECT:+,}127.0.0.1:$port"
  {
    echo "tickTime=2000"
    echo "initLimit=10"
    echo "syncLimit=5"
    echo "dataDir=$d/data"
    echo "clientPort=$port"
    echo "clientPortAddress=127.0.0.1"
    echo "admin.enableServer=false"
    echo "4lw.commands.whitelist=*"
    echo "maxClientCnxns=0"
    if [ "$SERVERS" -gt 1 ]; then
      for j in $(seq 1 "$SERVERS"); do
        echo "server.$j=127.0.0.1:$((CLIENT_PORT + 1000 + j)):$((CLIENT_PORT + 2000 + j))"
      done
    fi
  } >"$d/zoo.cfg"
  MAIN=org.apache.zookeeper.server.quorum.QuorumPeerMain
  java -Xmx1g -Dzookeeper.log.dir="$d" -cp "$CP" "$MAIN" "$d/zoo.cfg" >"$d/server.log" 2>&1 &
  echo $! >"$d/pid"
done

# Ready: every server answers ruok, and srvr names a mode (standalone, leader or follower).
for _ in $(seq 1 300); do
  ready=0
  for i in $(seq 1 "$SERVERS"); do
    mode=$(python3 - "$((CLIENT_PORT + i - 1))" <<'PY'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
    s.sendall(b"srvr")
    out = b""
    while chunk := s.recv(4096):
        out += chunk
    print(next((l.split(b":")[1].strip().decode() for l in out.splitlines() if l.startswith(b"Mode:")), ""))
except OSError:
    print("")
PY
)
    case "$mode" in standalone|leader|follower) ready=$((ready + 1)) ;; esac
  done
  if [ "$ready" = "$SERVERS" ]; then
    echo "$CONNECT"
    exit 0
  fi
  sleep 0.2
done
echo "the ensemble did not come up; see $DIR/zk*/server.log" >&2
exit 1
