"""confluent-kafka against a cluster whose nodes were started a moment ago: the AdminClient
creates a topic and a producer's first acks=all send succeeds, with the clients' default retry
settings. Prints the offset acknowledged.

usage: cluster_start.py BOOTSTRAP TOPIC
"""
import sys

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, topic = sys.argv[1], sys.argv[2]
admin = AdminClient({"bootstrap.servers": bootstrap})
admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])[topic].result(30)
delivered = []
producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
producer.produce(topic, value=b"first", partition=0, on_delivery=lambda err, msg: delivered.append((err, msg)))
producer.flush(30)
if len(delivered) != 1 or delivered[0][0] is not None:
    sys.exit(f"the first send was not acknowledged: {delivered}")
print(f"acknowledged at offset {delivered[0][1].offset()}")
