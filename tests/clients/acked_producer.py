"""Produces N messages with the given acks, and writes every acknowledged message as
"partition offset value" lines to OUT (only what the node acknowledged).

usage: acked_producer.py BOOTSTRAP TOPIC N ACKS OUT [VALUE_BYTES [TIMEOUT_MS]]
VALUE_BYTES pads each value ("m<i>") with "x" to that length; TIMEOUT_MS is the client's
message.timeout.ms (how long it retries a message before reporting it failed).
"""
import sys

from confluent_kafka import Producer

bootstrap, topic, n, acks, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
value_bytes = int(sys.argv[6]) if len(sys.argv) > 6 else 0
timeout_ms = sys.argv[7] if len(sys.argv) > 7 else "300000"
acked = []
failed = []


def delivered(err, msg):
    if err is None:
        acked.append((msg.partition(), msg.offset(), msg.value().decode()))
    else:
        failed.append(err)


producer = Producer(
    {"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 2, "message.timeout.ms": timeout_ms}
)
for i in range(n):
    while True:
        try:
            producer.produce(topic, value=f"m{i}".ljust(value_bytes, "x").encode(), on_delivery=delivered)
            break
        except BufferError:
            producer.poll(0.05)
producer.flush(60 + int(timeout_ms) / 1000)
with open(out, "w") as f:
    for p, o, v in acked:
        f.write(f"{p} {o} {v}\n")
print(f"acknowledged {len(acked)} of {n}")
if failed:
    print(f"failed {len(failed)}, the first: {failed[0]}")
