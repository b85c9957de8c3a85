"""Produces N messages with the given acks, and writes every acknowledged message as
"partition offset value" lines to OUT (only what the node acknowledged).

usage: acked_producer.py BOOTSTRAP TOPIC N ACKS OUT
"""
import sys

from confluent_kafka import Producer

bootstrap, topic, n, acks, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
acked = []


def delivered(err, msg):
    if err is None:
        acked.append((msg.partition(), msg.offset(), msg.value().decode()))


producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 2})
for i in range(n):
    while True:
        try:
            producer.produce(topic, value=f"m{i}".encode(), on_delivery=delivered)
            break
        except BufferError:
            producer.poll(0.05)
producer.flush(60)
with open(out, "w") as f:
    for p, o, v in acked:
        f.write(f"{p} {o} {v}\n")
print(f"acknowledged {len(acked)} of {n}")
