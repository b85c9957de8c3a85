#!/usr/bin/env python3
"""perf/partition-scale.py — what partition replicas cost a node, measured on three local nodes.

For each count of partitions (one topic, replication factor 3, so each node holds that many
replicas) on a fresh three-node cluster:
  - CreateTopics: the time to the answer, and to every partition having a leader;
  - idle: each node's resident memory and CPU (user + system, from /proc) over a quiet window,
    and the shard memory /metrics reports;
  - Metadata of the whole topic: its latency on the node, from /metrics' histogram sum;
  - failover: node 3 killed (SIGKILL), the time until every partition it led has a leader
    again, as Metadata from node 1 says;
  - restart: node 3 started again on its data, the time until its Kafka port answers Metadata
    with every broker and its ZooKeeper port answers `srvr` as serving.
With --produce, also `braid bench produce` into 4 partitions and into 1,000 partitions with 4
producers each (bounded by --messages; the topics are deleted after each run, as they fill
the disk fast).

Writes JSON (--json) and, with --svg, a plot of memory and idle CPU against the replicas.

Usage:
  perf/partition-scale.py [--counts 0,1000,2500,5000,10000] [--idle-seconds 30]
                          [--produce] [--messages 2000000] [--json FILE] [--svg FILE]
Needs: target/release/braid (cargo build --release), python3 with confluent-kafka.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BRAID = os.path.join(ROOT, "target", "release", "braid")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Ports: node i (1-based) uses these plus 100 * (i - 1).
KAFKA, RAFT, ZK, ADMIN = 29092, 29093, 22181, 29644


def port(base, node):
    return base + 100 * (node - 1)


class Cluster:
    """Three braid nodes on loopback, each with its own data directory under `base`."""

    def __init__(self, base, nodes=3):
        self.base = base
        self.nodes = nodes
        self.procs = {}
        self.peers = ",".join(f"{i}@127.0.0.1:{port(RAFT, i)}" for i in range(1, nodes + 1))

    def bootstrap(self, nodes=None):
        return ",".join(f"127.0.0.1:{port(KAFKA, i)}" for i in (nodes or range(1, self.nodes + 1)))

    def start(self, node):
        log = open(os.path.join(self.base, f"node{node}.log"), "ab")
        args = [BRAID, "start", "--node-id", str(node), "--peers", self.peers,
                "--data-dir", os.path.join(self.base, f"d{node}"),
                "--kafka-addr", f"127.0.0.1:{port(KAFKA, node)}",
                "--zk-addr", f"127.0.0.1:{port(ZK, node)}",
                "--admin-addr", f"127.0.0.1:{port(ADMIN, node)}"]
        self.procs[node] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)

    def start_all(self):
        for node in range(1, self.nodes + 1):
            self.start(node)

    def kill(self, node):
        self.procs[node].send_signal(signal.SIGKILL)
        self.procs[node].wait()

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()

    def pid(self, node):
        return self.procs[node].pid

    def cli(self, *args, node=1, timeout=120):
        out = subprocess.run([BRAID, *args, "--bootstrap", self.bootstrap([node])],
                             capture_output=True, text=True, timeout=timeout)
        return out

    def leaders(self, topic, node=1):
        """Partition -> leader (-1: none) as a fresh Metadata request to `node` says."""
        out = self.cli("cluster", "status", node=node, timeout=60)
        leaders = {}
        for line in out.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[0] == "partition" and parts[1].startswith(topic + "-"):
                leaders[int(parts[1].rsplit("-", 1)[1])] = int(parts[3])
        return leaders

    def metrics(self, node):
        with socket.create_connection(("127.0.0.1", port(ADMIN, node)), timeout=30) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := s.recv(1 << 20):
                data += chunk
        figures = {}
        for line in data.decode(errors="replace").split("\r\n\r\n", 1)[-1].splitlines():
            if line.startswith("#") or not line or "topic=" in line:
                continue
            name, _, value = line.rpartition(" ")
            try:
                figures[name] = float(value)
            except ValueError:
                pass
        return figures


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def resident_bytes(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def wait(what, check, timeout):
    started = time.time()
    while time.time() - started < timeout:
        value = check()
        if value:
            return time.time() - started, value
        time.sleep(0.1)
    raise SystemExit(f"timed out after {timeout} s waiting for {what}")


def zk_serving(node):
    try:
        with socket.create_connection(("127.0.0.1", port(ZK, node)), timeout=2) as s:
            s.sendall(b"srvr")
            answer = s.recv(4096).decode(errors="replace")
        return "Mode:" in answer
    except OSError:
        return False


def kafka_serving(cluster, node, topic, partitions):
    leaders = cluster.leaders(topic, node=node) if partitions else {}
    return len(leaders) == partitions and all(l >= 0 for l in leaders.values())


def measure(count, args):
    base = tempfile.mkdtemp(prefix="braid-scale-", dir=args.dir)
    cluster = Cluster(base)
    result = {"partitions": count, "replicas_per_node": count}
    try:
        cluster.start_all()
        topic = "scale"
        # Ready: a topic can be created (the controller answers).
        if count:
            started = time.time()
            out = cluster.cli("topic", "create", topic, "--partitions", str(count),
                              "--replication-factor", "3", timeout=300)
            if out.returncode != 0:
                raise SystemExit(f"creating {count} partitions failed: {out.stderr}")
            result["create_answer_s"] = round(time.time() - started, 3)
            took, _ = wait("every partition led", lambda: kafka_serving(cluster, 1, topic, count), 300)
            result["all_led_after_answer_s"] = round(took, 3)
        else:
            wait("the cluster serving", lambda: cluster.cli("cluster", "status").returncode == 0, 60)
        time.sleep(args.settle_seconds)
        before = {n: cpu_seconds(cluster.pid(n)) for n in (1, 2, 3)}
        time.sleep(args.idle_seconds)
        result["idle_cpu_percent"] = {
            n: round(100 * (cpu_seconds(cluster.pid(n)) - before[n]) / args.idle_seconds, 2) for n in (1, 2, 3)}
        result["resident_mb"] = {n: round(resident_bytes(cluster.pid(n)) / 2**20, 1) for n in (1, 2, 3)}
        figures = cluster.metrics(1)
        result["node1_metrics"] = {k: v for k, v in figures.items() if k.startswith(
            ("braid_shard_memory", "braid_shard_partition", "braid_shard_quiet", "process_"))}
        if count:
            m0 = cluster.metrics(1)
            for _ in range(args.metadata_requests):
                cluster.leaders(topic, node=1)
            m1 = cluster.metrics(1)
            key_sum = 'braid_kafka_request_latency_seconds_sum{api="Metadata"}'
            key_count = 'braid_kafka_request_latency_seconds_count{api="Metadata"}'
            n = m1[key_count] - m0[key_count]
            result["metadata_mean_ms"] = round(1000 * (m1[key_sum] - m0[key_sum]) / max(n, 1), 3)
            # Failover: node 3 killed; every partition it led gets a leader again.
            led_by_3 = [p for p, l in cluster.leaders(topic).items() if l == 3]
            cluster.kill(3)
            killed = time.time()

            def failed_over():
                leaders = cluster.leaders(topic, node=1)
                return all(leaders.get(p, -1) not in (-1, 3) for p in led_by_3)

            wait("a new leader for every partition node 3 led", failed_over, 120)
            result["led_by_killed_node"] = len(led_by_3)
            result["failover_s"] = round(time.time() - killed, 3)
            # Restart: node 3 serves Kafka and ZooKeeper again.
            restarted = time.time()
            cluster.start(3)
            wait("node 3 answering ZooKeeper", lambda: zk_serving(3), 120)
            result["restart_zookeeper_s"] = round(time.time() - restarted, 3)
            wait("node 3 answering Metadata", lambda: kafka_serving(cluster, 3, topic, count), 120)
            result["restart_kafka_s"] = round(time.time() - restarted, 3)
            result["restart_resident_mb"] = round(resident_bytes(cluster.pid(3)) / 2**20, 1)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    return result


def produce(args):
    """4 producers into 4 partitions, then into 1,000, alternated --rounds times."""
    base = tempfile.mkdtemp(prefix="braid-produce-", dir=args.dir)
    cluster = Cluster(base)
    runs = []
    try:
        cluster.start_all()
        wait("the cluster serving", lambda: cluster.cli("cluster", "status").returncode == 0, 60)
        for round_ in range(args.rounds):
            for partitions in (4, 1000):
                topic = f"produce-{partitions}-{round_}"
                out_json = os.path.join(base, f"{topic}.json")
                out = subprocess.run([BRAID, "bench", "produce", "--topic", topic, "--partitions", str(partitions),
                                      "--replication-factor", "3", "--producers", "4",
                                      "--messages", str(args.messages), "--json", out_json,
                                      "--bootstrap", cluster.bootstrap()], capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(f"bench failed: {out.stderr[-2000:]}")
                with open(out_json) as f:
                    run = json.load(f)
                runs.append({"partitions": partitions, "round": round_, "mb_per_s": run["mb_per_s"],
                             "latency_us": run["latency_us"], "errors": run["errors"]})
                cluster.cli("topic", "delete", topic)
                print(f"produce into {partitions} partitions: {run['mb_per_s']:.1f} MB/s", file=sys.stderr)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    by = {p: sorted(r["mb_per_s"] for r in runs if r["partitions"] == p) for p in (4, 1000)}
    median = {p: v[len(v) // 2] for p, v in by.items()}
    return {"runs": runs, "median_mb_per_s": median, "ratio_1000_to_4": round(median[1000] / median[4], 3)}


def svg(results, path):
    """Resident memory (MB, left axis) and idle CPU (% of one CPU, right axis) per node."""
    width, height, left, right, top, bottom = 760, 420, 70, 70, 40, 50
    xs = [r["replicas_per_node"] for r in results]
    mem = [max(r["resident_mb"].values()) for r in results]
    cpu = [max(r["idle_cpu_percent"].values()) for r in results]
    xmax, mmax, cmax = max(xs) or 1, max(mem) * 1.15, max(max(cpu) * 1.15, 1)

    def x(v):
        return left + (width - left - right) * v / xmax

    def y(v, top_value):
        return height - bottom - (height - top - bottom) * v / top_value

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="14">Three nodes on one host: each node '
           'with N partition replicas (RF=3), idle</text>',
           f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
           f'<line x1="{width - right}" y1="{top}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>',
           f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">partition replicas per node</text>',
           f'<text x="18" y="{height / 2}" transform="rotate(-90 18 {height / 2})" text-anchor="middle" fill="#1f77b4">resident memory, MB (most of three nodes)</text>',
           f'<text x="{width - 18}" y="{height / 2}" transform="rotate(90 {width - 18} {height / 2})" text-anchor="middle" fill="#d62728">idle CPU, % of one CPU (most of three)</text>']
    for v in xs:
        out.append(f'<text x="{x(v)}" y="{height - bottom + 16}" text-anchor="middle">{v}</text>')
    for i in range(5):
        mv, cv = mmax * i / 4, cmax * i / 4
        out.append(f'<text x="{left - 6}" y="{y(mv, mmax) + 4}" text-anchor="end" fill="#1f77b4">{mv:.0f}</text>')
        out.append(f'<text x="{width - right + 6}" y="{y(cv, cmax) + 4}" fill="#d62728">{cv:.1f}</text>')
    for values, top_value, color in ((mem, mmax, "#1f77b4"), (cpu, cmax, "#d62728")):
        points = " ".join(f"{x(a)},{y(b, top_value)}" for a, b in zip(xs, values))
        out.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/>')
        for a, b in zip(xs, values):
            out.append(f'<circle cx="{x(a)}" cy="{y(b, top_value)}" r="3" fill="{color}"/>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="0,1000,2500,5000,10000")
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--settle-seconds", type=float, default=10)
    parser.add_argument("--metadata-requests", type=int, default=20)
    parser.add_argument("--produce", action="store_true")
    parser.add_argument("--messages", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the data directories go [default: TMPDIR]")
    parser.add_argument("--json")
    parser.add_argument("--svg")
    args = parser.parse_args()
    if not os.path.exists(BRAID):
        raise SystemExit(f"{BRAID} is missing: cargo build --release -p braid")
    report = {"date": time.strftime("%Y-%m-%d"), "host_cpus": os.cpu_count(), "scale": []}
    def save():
        if args.json:
            with open(args.json, "w") as f:
                f.write(json.dumps(report, indent=1))

    for count in (int(c) for c in args.counts.split(",") if c.strip()):
        result = measure(count, args)
        print(json.dumps(result), file=sys.stderr)
        report["scale"].append(result)
        save()
    if args.produce:
        report["produce"] = produce(args)
        save()
    print(json.dumps(report, indent=1))
    if args.svg and report["scale"]:
        svg(report["scale"], args.svg)


if __name__ == "__main__":
    main()
