"""CreateTopics and CreatePartitions with a manual replica assignment on a cluster, through
confluent-kafka's AdminClient: the partitions get exactly the replicas asked for (Metadata
names them), records go through, and the assignments Kafka refuses are refused with its codes.
Prints "ok".

usage: manual_assignment.py BOOTSTRAP  (a cluster of nodes 1, 2 and 3)
"""
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

bootstrap = sys.argv[1]
admin = AdminClient({"bootstrap.servers": bootstrap})
wanted = [[2, 3, 1], [3, 1, 2], [1, 2, 3], [2, 1, 3]]
for _, f in admin.create_topics([NewTopic("manual", num_partitions=len(wanted), replica_assignment=wanted)]).items():
    f.result(timeout=30)

deadline = time.monotonic() + 30
while True:
    topic = admin.list_topics(topic="manual", timeout=10).topics["manual"]
    got = {p.id: list(p.replicas) for p in topic.partitions.values()}
    if len(got) == len(wanted) and all(p.leader >= 0 for p in topic.partitions.values()):
        break
    assert time.monotonic() < deadline, f"no leaders for every partition: {got}"
    time.sleep(0.2)
assert [sorted(got[i]) for i in range(len(wanted))] == [sorted(r) for r in wanted], got

producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
for i in range(len(wanted)):
    producer.produce("manual", value=f"v{i}".encode(), partition=i)
assert producer.flush(30) == 0
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "manual-reader", "auto.offset.reset": "earliest"})
consumer.assign([TopicPartition("manual", i, 0) for i in range(len(wanted))])
values = set()
deadline = time.monotonic() + 30
while len(values) < len(wanted) and time.monotonic() < deadline:
    msg = consumer.poll(0.5)
    if msg is not None and msg.error() is None:
        values.add(msg.value().decode())
consumer.close()
assert values == {f"v{i}" for i in range(len(wanted))}, values


def refused(assignment, code, what):
    for _, f in admin.create_topics([NewTopic("manual-bad", num_partitions=len(assignment), replica_assignment=assignment)]).items():
        try:
            f.result(timeout=30)
        except KafkaException as e:
            assert e.args[0].code() == code, (what, e)
            return
    raise SystemExit(f"{what}: accepted")


# CreatePartitions with the new partitions' replicas given.
more = [[3, 2, 1], [1, 3, 2]]
for _, f in admin.create_partitions([NewPartitions("manual", 6, replica_assignment=more)]).items():
    f.result(timeout=30)
deadline = time.monotonic() + 30
while True:
    grown = {p.id: sorted(p.replicas) for p in admin.list_topics(topic="manual", timeout=10).topics["manual"].partitions.values()}
    if len(grown) == 6:
        break
    assert time.monotonic() < deadline, grown
    time.sleep(0.2)
assert [grown[4], grown[5]] == [sorted(r) for r in more], grown
for bad, what in [([[1, 2]], "fewer replicas than the topic's"), ([[1, 2, 3], [1, 2, 3]], "more lists than partitions added")]:
    for _, f in admin.create_partitions([NewPartitions("manual", 7, replica_assignment=bad)]).items():
        try:
            f.result(timeout=30)
            raise SystemExit(f"CreatePartitions with {what} was accepted")
        except KafkaException as e:
            assert e.args[0].code() == KafkaError.INVALID_REPLICA_ASSIGNMENT, (what, e)

refused([[1, 9]], KafkaError.INVALID_REPLICA_ASSIGNMENT, "a replica on a node that is not a member")
refused([[1, 1]], KafkaError.INVALID_REPLICA_ASSIGNMENT, "the same node twice")
refused([[1, 2], [3]], KafkaError.INVALID_REPLICA_ASSIGNMENT, "partitions of different replica counts")
print("ok")
