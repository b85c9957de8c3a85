"""Kafka's topic configs through confluent-kafka's AdminClient (librdkafka): every documented
name is accepted at creation and by IncrementalAlterConfigs, DescribeConfigs lists each with
its value and whether it is a default, and a value Braid cannot honour is refused
INVALID_CONFIG with the reason. Prints "ok".

usage: topic_configs.py BOOTSTRAP
"""
import sys

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic)

bootstrap = sys.argv[1]
admin = AdminClient({"bootstrap.servers": bootstrap})
created = {"min.insync.replicas": "1", "compression.type": "producer", "message.format.version": "2.8-IV1",
           "min.cleanable.dirty.ratio": "0.2", "cleanup.policy": "compact", "index.interval.bytes": "1024"}
for _, f in admin.create_topics([NewTopic("configs", num_partitions=1, replication_factor=1, config=created)]).items():
    f.result(timeout=30)

resource = ConfigResource("topic", "configs")


def describe():
    entries = admin.describe_configs([resource])[resource].result(timeout=30)
    return {name: (e.value, e.is_default) for name, e in entries.items()}


got = describe()
for name, value in created.items():
    assert got[name] == (value, False), (name, got[name])
assert got["flush.ms"] == ("9223372036854775807", True), got["flush.ms"]
assert got["unclean.leader.election.enable"] == ("false", True)
assert len(got) >= 34, sorted(got)

ops = [ConfigEntry("preallocate", "true", incremental_operation=AlterConfigOpType.SET),
       ConfigEntry("flush.messages", "1000", incremental_operation=AlterConfigOpType.SET)]
admin.incremental_alter_configs([ConfigResource("topic", "configs", incremental_configs=ops)])[resource].result(timeout=30)
got = describe()
assert got["preallocate"] == ("true", False) and got["flush.messages"] == ("1000", False), got

for name, value in [("compression.type", "brotli"), ("message.timestamp.type", "BrokerTime"),
                    ("unclean.leader.election.enable", "true"), ("min.insync.replicas", "0"),
                    ("no.such.config", "1")]:
    ops = [ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)]
    future = admin.incremental_alter_configs([ConfigResource("topic", "configs", incremental_configs=ops)])[resource]
    try:
        future.result(timeout=30)
        raise SystemExit(f"{name}={value} was accepted")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.INVALID_CONFIG, (name, e)
print("ok")
