"""A transactional workload and its checker, in the manner of Jepsen's Kafka workloads.

  run BOOTSTRAP SEED SECONDS HISTORY   several transactional producers (confluent-kafka) send
                                       unique values in transactions of 1-4 records to random
                                       partitions of `jepsen` and commit or abort them (seeded
                                       choices), while read_committed pollers read every
                                       partition; every outcome and every record read goes
                                       to HISTORY (JSON lines). Bounded by SECONDS.
  check BOOTSTRAP HISTORY              reads the topic whole (read_committed) and checks the
                                       history: no lost write (a committed transaction's
                                       records all readable), no aborted read (nothing of an
                                       aborted transaction read, ever), no duplicate, no
                                       offset holding two values, polls monotonic per
                                       partition, and transactions whose outcome the client
                                       could not learn readable all or not at all. Prints the
                                       counts and "ok", or what failed.

The nemesis (node kills, link cuts) is the caller's: it runs while `run` does.
"""
import json
import random
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TOPIC = "jepsen"
PARTITIONS = 3
CLIENTS = 3


def producer(bootstrap, client):
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"jepsen-{client}",
            "transaction.timeout.ms": 10000,
            "message.timeout.ms": 8000,
            "socket.timeout.ms": 5000,
        }
    )
    p.init_transactions(30)
    return p


def client_loop(bootstrap, seed, client, deadline, out, lock):
    rng = random.Random(seed * 1000 + client)
    p = None
    n = 0
    while time.monotonic() < deadline:
        try:
            if p is None:
                p = producer(bootstrap, client)
            values = [f"{client}-{n + i}" for i in range(rng.randint(1, 4))]
            n += len(values)
            commit = rng.random() < 0.7
            record = {"type": "txn", "client": client, "values": values, "outcome": "unknown"}
            p.begin_transaction()
            try:
                for v in values:
                    p.produce(TOPIC, value=v.encode(), partition=rng.randrange(PARTITIONS))
                p.flush(10)
                if commit:
                    p.commit_transaction(15)
                    record["outcome"] = "commit"
                else:
                    p.abort_transaction(15)
                    record["outcome"] = "abort"
            except KafkaException as e:
                err = e.args[0]
                if err.txn_requires_abort():
                    try:
                        p.abort_transaction(15)
                        record["outcome"] = "abort"
                    except KafkaException:
                        p = None
                else:
                    p = None  # fatal, or retriable with the outcome unknown: a new producer
            with lock:
                out.write(json.dumps(record) + "\n")
        except KafkaException:
            p = None
            time.sleep(0.2)
    if p is not None:
        try:
            p.flush(5)
        except KafkaException:
            pass


def poller(bootstrap, index, deadline, out, lock):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"jepsen-poll-{index}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    c.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    while time.monotonic() < deadline:
        for m in c.consume(500, 0.5):
            if m.error() is None:
                with lock:
                    out.write(json.dumps({"type": "poll", "poller": index, "p": m.partition(), "o": m.offset(), "v": m.value().decode()}) + "\n")
    c.close()


def run(bootstrap, seed, seconds, history):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, f in admin.create_topics([NewTopic(TOPIC, PARTITIONS, -1)]).items():
        f.result(timeout=30)
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    with open(history, "w") as out:
        threads = [threading.Thread(target=client_loop, args=(bootstrap, seed, c, deadline, out, lock)) for c in range(CLIENTS)]
        threads += [threading.Thread(target=poller, args=(bootstrap, i, deadline, out, lock)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    print("ok")


def read_all(bootstrap):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"jepsen-final-{time.monotonic_ns()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    ends = {p: c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=30)[1] for p in range(PARTITIONS)}
    c.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    got = []
    position = {p: 0 for p in range(PARTITIONS)}
    deadline = time.monotonic() + 60
    while any(position[p] < ends[p] - 1 for p in ends) and time.monotonic() < deadline:
        for m in c.consume(1000, 0.5):
            if m.error() is None:
                got.append((m.partition(), m.offset(), m.value().decode()))
                position[m.partition()] = m.offset()
        # A partition whose last offsets are markers has nothing more to deliver.
        positions = c.position([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        for tp in positions:
            if tp.offset >= ends[tp.partition]:
                position[tp.partition] = ends[tp.partition]
    c.close()
    return got


def check(bootstrap, history):
    txns, polls = [], []
    for line in open(history):
        r = json.loads(line)
        (txns if r["type"] == "txn" else polls).append(r)
    final = read_all(bootstrap)
    problems = []
    outcome = {}
    for t in txns:
        for v in t["values"]:
            outcome[v] = (t["outcome"], tuple(t["values"]))
    read_values = [v for _, _, v in final]
    seen = set(read_values)
    duplicates = len(read_values) - len(seen)
    if duplicates:
        problems.append(f"{duplicates} duplicated values")
    lost = [v for v, (o, _) in outcome.items() if o == "commit" and v not in seen]
    if lost:
        problems.append(f"{len(lost)} lost writes, e.g. {lost[:5]}")
    all_reads = [(p, o, v) for p, o, v in final] + [(r["p"], r["o"], r["v"]) for r in polls]
    aborted = sorted({v for _, _, v in all_reads if outcome.get(v, ("?",))[0] == "abort"})
    if aborted:
        problems.append(f"{len(aborted)} aborted reads, e.g. {aborted[:5]}")
    at = {}
    for p, o, v in all_reads:
        if at.setdefault((p, o), v) != v:
            problems.append(f"offset {p}/{o} read as {at[(p, o)]} and {v}")
            break
    last = {}
    for r in polls:
        key = (r["poller"], r["p"])
        if key in last and r["o"] <= last[key]:
            problems.append(f"poller {r['poller']} partition {r['p']}: offset {r['o']} after {last[key]}")
            break
        last[key] = r["o"]
    partial = [vs for v, (o, vs) in outcome.items() if o == "unknown" and any(x in seen for x in vs) and not all(x in seen for x in vs)]
    if partial:
        problems.append(f"{len(partial)} transactions partly readable, e.g. {partial[:2]}")
    counts = {o: sum(1 for t in txns if t["outcome"] == o) for o in ("commit", "abort", "unknown")}
    print(f"transactions {counts}, records read {len(final)}, polled {len(polls)}")
    print("ok" if not problems else "FAILED: " + "; ".join(problems))


if sys.argv[1] == "run":
    run(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
else:
    check(sys.argv[2], sys.argv[3])
