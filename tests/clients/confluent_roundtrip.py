"""confluent-kafka: an acks=all producer writes N keyed messages over 8 partitions, a consumer
using assign() reads them all back; every acknowledged message is read exactly once, in
per-partition offset order, and each key's messages keep their production order.

usage: confluent_roundtrip.py BOOTSTRAP TOPIC N [REPLICATION_FACTOR]
"""
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
replication_factor = int(sys.argv[4]) if len(sys.argv) > 4 else 1
PARTITIONS = 8

admin = AdminClient({"bootstrap.servers": bootstrap})
for _, future in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=replication_factor)]).items():
    future.result(30)

acked = {}
errors = []


def delivered(err, msg):
    if err is not None:
        errors.append(str(err))
    else:
        acked[(msg.partition(), msg.offset())] = (msg.key(), msg.value())


producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
for i in range(n):
    while True:
        try:
            producer.produce(topic, key=str(i % 997).encode(), value=str(i).encode(), on_delivery=delivered)
            break
        except BufferError:
            producer.poll(0.05)
    if i % 5000 == 0:
        producer.poll(0)
remaining = producer.flush(120)
assert remaining == 0, f"{remaining} messages not delivered"
assert not errors, f"delivery errors: {errors[:5]}"
assert len(acked) == n, f"{len(acked)} acknowledged of {n}"

consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "braid-assign-only", "enable.auto.commit": False})
consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
seen = {}
last_offset = {}
deadline = time.time() + 120
while len(seen) < n and time.time() < deadline:
    for msg in consumer.consume(1000, 1.0):
        assert msg.error() is None, msg.error()
        key = (msg.partition(), msg.offset())
        assert key not in seen, f"read twice: {key}"
        assert msg.offset() > last_offset.get(msg.partition(), -1), f"out of order in partition {msg.partition()}"
        last_offset[msg.partition()] = msg.offset()
        seen[key] = (msg.key(), msg.value())
consumer.close()
assert seen == acked, f"read {len(seen)} of {len(acked)} acknowledged messages, or different ones"

# Each key's values appear in production order within its partition.
by_key = {}
for (partition, offset) in sorted(seen):
    k, v = seen[(partition, offset)]
    by_key.setdefault(k, []).append(int(v))
for k, values in by_key.items():
    assert values == sorted(values), f"key {k} out of order"
used = {p for (p, _) in seen}
assert len(used) == PARTITIONS, f"only partitions {sorted(used)} used"
print(f"ok: {n} keyed messages acknowledged and read back over {PARTITIONS} partitions")
