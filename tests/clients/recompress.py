"""compression.type on a topic through confluent-kafka: records produced uncompressed to a
topic with compression.type=zstd (and gzip-compressed ones to a compression.type=uncompressed
topic) are consumed back whole, headers included (a duplicate header key too). Prints "ok";
the test then reads the stored batches' codec.

usage: recompress.py BOOTSTRAP
"""
import sys
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap = sys.argv[1]
admin = AdminClient({"bootstrap.servers": bootstrap})
topics = [NewTopic("zstd-stored", 1, 1, config={"compression.type": "zstd"}),
          NewTopic("plain-stored", 1, 1, config={"compression.type": "uncompressed"})]
for _, f in admin.create_topics(topics).items():
    f.result(timeout=30)
headers = [("trace", b"a"), ("trace", b"b"), ("kind", b"x")]
for topic, codec in [("zstd-stored", "none"), ("plain-stored", "gzip")]:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "compression.codec": codec, "linger.ms": 5})
    for i in range(50):
        producer.produce(topic, key=f"k{i}".encode(), value=(f"value-{i}-" + "z" * 200).encode(), headers=headers)
    assert producer.flush(30) == 0

for topic in ("zstd-stored", "plain-stored"):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 50 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg)
    consumer.close()
    assert [m.value().decode() for m in got] == [f"value-{i}-" + "z" * 200 for i in range(50)], topic
    assert all(m.headers() == headers for m in got), got[0].headers()
print("ok")
