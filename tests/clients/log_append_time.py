"""Record timestamps through confluent-kafka: on a message.timestamp.type=LogAppendTime topic a
record produced with an old timestamp is consumed with the broker's append time and the
LogAppendTime type; on a CreateTime topic the producer's timestamp stays; a topic with
message.timestamp.before.max.ms refuses an old timestamp INVALID_TIMESTAMP and takes a
current one. Prints "ok".

usage: log_append_time.py BOOTSTRAP
"""
import sys
import time

from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap = sys.argv[1]
admin = AdminClient({"bootstrap.servers": bootstrap})
topics = [NewTopic("appended", 1, 1, config={"message.timestamp.type": "LogAppendTime"}), NewTopic("created", 1, 1)]
for _, f in admin.create_topics(topics).items():
    f.result(timeout=30)
producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
before = int(time.time() * 1000)
for topic in ("appended", "created"):
    producer.produce(topic, value=b"v", timestamp=1_000)
assert producer.flush(30) == 0
after = int(time.time() * 1000)


def first(topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ts-{topic}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is not None and msg.error() is None:
            c.close()
            return msg.timestamp()
    raise SystemExit(f"nothing consumed from {topic}")


kind, ts = first("appended")
assert kind == TIMESTAMP_LOG_APPEND_TIME and before - 1_000 <= ts <= after + 1_000, (kind, ts, before, after)
assert first("created") == (TIMESTAMP_CREATE_TIME, 1_000)

bounded = NewTopic("bounded", 1, 1, config={"message.timestamp.before.max.ms": "3600000"})
for _, f in admin.create_topics([bounded]).items():
    f.result(timeout=30)
reports = []
strict = Producer({"bootstrap.servers": bootstrap, "acks": "all", "retries": 0})
strict.produce("bounded", value=b"old", timestamp=1_000, on_delivery=lambda err, msg: reports.append(err))
assert strict.flush(30) == 0  # alone in its batch: a batch is refused whole, as Kafka refuses it
strict.produce("bounded", value=b"now", on_delivery=lambda err, msg: reports.append(err))
assert strict.flush(30) == 0
assert reports[0] is not None and reports[0].code() == KafkaError.INVALID_TIMESTAMP, reports
assert reports[1] is None, reports
print("ok")
