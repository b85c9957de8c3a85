"""kafka-python's admin client creates, describes, alters and deletes a topic.

usage: kafka_python_admin.py BOOTSTRAP TOPIC
"""
import sys
import time

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

bootstrap, topic = sys.argv[1], sys.argv[2]
admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)

admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1, topic_configs={"retention.ms": "3600000"})])
try:
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    raise AssertionError("creating an existing topic must fail")
except TopicAlreadyExistsError:
    pass

described = admin.describe_topics([topic])
assert described[0]["error_code"] == 0, described
assert len(described[0]["partitions"]) == 3, described


def topic_configs():
    result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    if isinstance(result, dict):  # kafka-python 2.1+
        entries = result["topic"][topic]
        return {name: entry["value"] for name, entry in entries.items()}
    resources = result[0].resources  # kafka-python 2.0
    return {entry[0]: entry[1] for entry in resources[0][4]}


assert topic_configs()["retention.ms"] == "3600000"
admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "1000", "cleanup.policy": "compact"})])
configs = topic_configs()
assert configs["retention.ms"] == "1000", configs
assert configs["cleanup.policy"] == "compact", configs

admin.delete_topics([topic])
deadline = time.time() + 10
while topic in admin.list_topics() and time.time() < deadline:
    time.sleep(0.1)
assert topic not in admin.list_topics(), "topic still listed after delete"
print("ok: created, described, altered and deleted", topic)
