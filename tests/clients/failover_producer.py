"""Produces continuously with acks=all and no retries until STOPFILE exists (or MAX_SECONDS
pass, or 2,000,000 messages), then writes every acknowledged message as
"ack_time_ms partition offset value" lines to OUT. A value is "m<i>@<send time in ms>".

Without retries a message is either acknowledged once or reported failed, so every value is
sent at most once: any duplicate read back is the server's doing. Failed messages are counted,
not resent (the next message carries a new value).

usage: failover_producer.py BOOTSTRAP TOPIC OUT STOPFILE MAX_SECONDS [RATE]
RATE: messages per second at most (default: as fast as acknowledgements allow).
FAILOVER_PRODUCER_DEBUG=metadata,broker,... turns on librdkafka's debug contexts (on stderr).
FAILOVER_PRODUCER_IDEMPOTENT=1 makes it an idempotent producer instead (enable.idempotence:
librdkafka retries every failed batch, and the broker must store each one once).
"""
import os
import sys
import time

from confluent_kafka import Producer

bootstrap, topic, out, stopfile, max_seconds = sys.argv[1:6]
rate = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
started = time.time()
deadline = started + float(max_seconds)
acked = []
failed = [0]


def delivered(err, msg):
    if err is None:
        acked.append((int(time.time() * 1000), msg.partition(), msg.offset(), msg.value().decode()))
    else:
        failed[0] += 1


producer_config = {
    "bootstrap.servers": bootstrap,
    "acks": "all",
    "enable.idempotence": False,
    "message.send.max.retries": 0,
    "linger.ms": 5,
    "message.timeout.ms": 10000,
    # A paused leader never answers: give up on a request after 1 s (the client-side socket
    # timeout; librdkafka's default is 60 s), look the leader up again, go on.
    "socket.timeout.ms": 1000,
    "topic.metadata.refresh.interval.ms": 200,
    "retry.backoff.ms": 50,
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 500,
}
if os.environ.get("FAILOVER_PRODUCER_IDEMPOTENT") == "1":
    del producer_config["message.send.max.retries"]
    producer_config.update({"enable.idempotence": True, "message.timeout.ms": 60000})
producer = Producer(producer_config)
if os.environ.get("FAILOVER_PRODUCER_DEBUG"):
    producer = Producer({**producer_config, "debug": os.environ["FAILOVER_PRODUCER_DEBUG"]})
i = 0
while i < 2_000_000 and time.time() < deadline and not os.path.exists(stopfile):
    if len(producer) >= 2000 or rate and i >= (time.time() - started) * rate:
        producer.poll(0.001)
        continue
    try:
        producer.produce(topic, value=f"m{i}@{int(time.time() * 1000)}".encode(), on_delivery=delivered)
        i += 1
    except BufferError:
        producer.poll(0.01)
    producer.poll(0)
producer.flush(30)
with open(out, "w") as f:
    for t, p, o, v in acked:
        f.write(f"{t} {p} {o} {v}\n")
print(f"sent {i}, acknowledged {len(acked)}, failed {failed[0]}")
