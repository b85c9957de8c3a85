"""segment.ms through confluent-kafka: creates topic "aged" with segment.ms=1000 and produces
records whose timestamps are 2 s apart (each past segment.ms from the segment's first), so
each starts a segment. Prints "ok"; the test reads the segment count from /v1/status.

usage: segment_ms.py BOOTSTRAP
"""
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap = sys.argv[1]
admin = AdminClient({"bootstrap.servers": bootstrap})
for _, f in admin.create_topics([NewTopic("aged", 1, 1, config={"segment.ms": "1000"})]).items():
    f.result(timeout=30)
producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
now = int(time.time() * 1000)
for i in range(3):
    producer.produce("aged", value=b"v", timestamp=now + 2_000 * i)
    assert producer.flush(30) == 0
print("ok")
