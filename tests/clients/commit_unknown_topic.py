"""Offsets committed for a topic the cluster does not have are refused per partition with
UNKNOWN_TOPIC_OR_PARTITION, as Kafka's broker answers, and the other partitions of the same
request are stored: confluent-kafka's AlterConsumerGroupOffsets and a consumer's commit.
Prints "ok".

usage: commit_unknown_topic.py BOOTSTRAP TOPIC  (TOPIC exists, with partition 0)
"""
import sys

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

bootstrap, topic = sys.argv[1:3]
admin = AdminClient({"bootstrap.servers": bootstrap})
asked = [TopicPartition("no-such-topic", 0, 5), TopicPartition(topic, 0, 0), TopicPartition(topic, 7, 1)]
for group, future in admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions("g-alter", asked)]).items():
    got = {(tp.topic, tp.partition): tp.error for tp in future.result(timeout=30).topic_partitions}
    unknown = KafkaError.UNKNOWN_TOPIC_OR_PART
    assert got[("no-such-topic", 0)] is not None and got[("no-such-topic", 0)].code() == unknown, got
    assert got[(topic, 7)] is not None and got[(topic, 7)].code() == unknown, got
    assert got[(topic, 0)] is None, got
stored = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("g-alter")])["g-alter"].result(timeout=30)
kept = {(tp.topic, tp.partition): tp.offset for tp in stored.topic_partitions}
assert kept.get((topic, 0)) == 0 and ("no-such-topic", 0) not in kept, kept

consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "g-commit", "enable.auto.commit": False})
try:
    consumer.commit(offsets=[TopicPartition("no-such-topic", 0, 5)], asynchronous=False)
    raise SystemExit("a commit for a topic that does not exist was accepted")
except KafkaException as e:
    assert e.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, e
finally:
    consumer.close()
print("ok")
