"""DeleteRecords through confluent-kafka's AdminClient, as Kafka Streams purges its
repartition topics: the log start offset moves to the offset asked for, ListOffsets (earliest)
and the consumer's watermarks report it, a consumer from the beginning starts there, an offset
past the high watermark is refused OFFSET_OUT_OF_RANGE, and -1 deletes up to the high
watermark. Prints "ok".

usage: delete_records.py BOOTSTRAP TOPIC  (TOPIC exists, one partition, empty)
"""
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

bootstrap, topic = sys.argv[1:3]
producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "batch.num.messages": 7})
for i in range(100):
    producer.produce(topic, value=f"r{i}".encode(), partition=0)
assert producer.flush(30) == 0
admin = AdminClient({"bootstrap.servers": bootstrap})
tp = TopicPartition(topic, 0)


def delete(offset):
    return admin.delete_records([TopicPartition(topic, 0, offset)])[TopicPartition(topic, 0, offset)].result(timeout=30)


def earliest():
    return admin.list_offsets({tp: OffsetSpec.earliest()})[tp].result(timeout=30).offset


assert earliest() == 0
deleted = delete(40)
assert deleted.low_watermark == 40, deleted
assert earliest() == 40, earliest()
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "purged", "auto.offset.reset": "earliest"})
low, high = consumer.get_watermark_offsets(tp, timeout=30)
assert (low, high) == (40, 100), (low, high)
consumer.subscribe([topic])
first = None
deadline = time.monotonic() + 30
while first is None and time.monotonic() < deadline:
    msg = consumer.poll(0.5)
    if msg is not None and msg.error() is None:
        first = msg
consumer.close()
assert first is not None and first.offset() == 40 and first.value() == b"r40", first and (first.offset(), first.value())

try:
    delete(200)
    raise SystemExit("an offset past the high watermark was accepted")
except KafkaException as e:
    assert e.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE, e
assert delete(10).low_watermark == 40, "a start never moves back"
assert delete(-1).low_watermark == 100
assert earliest() == 100
print("ok")
