"""Counts what a read_committed consumer reads from partition 0 of TOPIC and checks it is
COUNT records. Prints "ok".

usage: txn_count.py BOOTSTRAP TOPIC COUNT
"""
import sys
import time

from confluent_kafka import Consumer, TopicPartition

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "count", "isolation.level": "read_committed", "enable.auto.commit": False})
c.assign([TopicPartition(topic, 0, 0)])
got = 0
deadline = time.monotonic() + 30
while got < count and time.monotonic() < deadline:
    for m in c.consume(1000, 0.5):
        if m.error() is None:
            got += 1
c.close()
assert got == count, f"read {got} of {count}"
print("ok")
