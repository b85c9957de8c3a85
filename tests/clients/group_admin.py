"""Consumer-group administration through kafka-python's and confluent-kafka's admin clients:
lists and describes groups, reads a group's offsets, deletes some of them (OffsetDelete), and
deletes a whole group (DeleteGroups). Prints "ok" when every answer is what Kafka gives.

usage: group_admin.py BOOTSTRAP TOPIC GROUP_TO_TRIM GROUP_TO_DELETE
Both groups must be empty (no members) and hold committed offsets for TOPIC partition 0.
"""
import sys

from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient, TopicPartition

bootstrap, topic, trim, delete = sys.argv[1:5]
admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
listed = {g["group_id"] for g in admin.list_groups()}
assert {trim, delete} <= listed, listed
described = admin.describe_groups([trim])[trim]
assert described["group_state"] == "Empty" and described["error"] is None, described
offsets = admin.list_group_offsets(trim)[trim]
assert TopicPartition(topic, 0) in offsets, offsets
admin.delete_group_offsets(trim, [TopicPartition(topic, 0)])
offsets = admin.list_group_offsets(trim)[trim]
assert TopicPartition(topic, 0) not in offsets or offsets[TopicPartition(topic, 0)].offset == -1, offsets

confluent = AdminClient({"bootstrap.servers": bootstrap})
for group, future in confluent.delete_consumer_groups([delete]).items():
    future.result()
groups = {g.group_id for g in confluent.list_consumer_groups().result().valid}
assert delete not in groups and trim in groups, groups
print("ok")
