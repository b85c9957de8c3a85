"""Transactions through confluent-kafka (librdkafka): a transactional producer runs TXNS
transactions over two partitions of a topic, every other one aborted; a read_committed consumer
sees exactly the committed records, in order, and no markers; a read_uncommitted consumer sees
every record. Then a second producer with the same transactional.id fences the first: the old
one's next transaction fails as fenced. Prints "ok".

usage: txn_confluent.py BOOTSTRAP [TXNS [TOPIC]]
"""
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap = sys.argv[1]
txns = int(sys.argv[2]) if len(sys.argv) > 2 else 20
per_txn = 10
topic = sys.argv[3] if len(sys.argv) > 3 else "txn-out"
admin = AdminClient({"bootstrap.servers": bootstrap})
for _, f in admin.create_topics([NewTopic(topic, 2, -1)]).items():
    f.result(timeout=30)

producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "txn-test-1", "transaction.timeout.ms": 60000})
producer.init_transactions(30)
committed = []
for t in range(txns):
    producer.begin_transaction()
    values = [f"{t}-{i}".encode() for i in range(per_txn)]
    for i, v in enumerate(values):
        producer.produce(topic, value=v, partition=i % 2)
    # Sent and stored before the end: an aborted transaction's records are in the log.
    assert producer.flush(30) == 0
    if t % 2 == 0:
        producer.commit_transaction(30)
        committed.extend(values)
    else:
        producer.abort_transaction(30)


def consume(isolation, expected):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"txn-{isolation}",
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
            "enable.auto.commit": False,
        }
    )
    c.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < expected and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    # Nothing more arrives (no marker, no aborted record).
    end = time.monotonic() + 2
    while time.monotonic() < end:
        msg = c.poll(0.2)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    c.close()
    return got


seen = consume("read_committed", len(committed))
assert sorted(seen) == sorted(committed), f"read_committed saw {len(seen)} records, {len(committed)} committed"
for p in (0, 1):
    order = [v for v in seen if int(v.split(b"-")[1]) % 2 == p]
    assert order == [v for v in committed if int(v.split(b"-")[1]) % 2 == p], "out of order"
everything = consume("read_uncommitted", txns * per_txn)
assert len(everything) == txns * per_txn, f"read_uncommitted saw {len(everything)} of {txns * per_txn}"

# A new producer with the same id fences the old one.
producer.begin_transaction()
producer.produce(topic, value=b"zombie", partition=0)
second = Producer({"bootstrap.servers": bootstrap, "transactional.id": "txn-test-1"})
second.init_transactions(30)
try:
    producer.commit_transaction(10)
    raise SystemExit("the fenced producer committed")
except KafkaException as e:
    err = e.args[0]
    assert err.fatal() or err.txn_requires_abort() or "fenced" in str(err).lower(), str(err)
second.begin_transaction()
second.produce(topic, value=b"after", partition=0)
second.commit_transaction(30)
seen = consume("read_committed", len(committed) + 1)
assert b"zombie" not in seen and b"after" in seen, "the zombie's record must not be read"
print("ok")
