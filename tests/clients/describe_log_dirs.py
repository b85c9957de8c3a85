"""DescribeLogDirs through kafka-python's KafkaAdminClient: the node names its log directory
and, for a topic written to, every partition with its size (the partition written to is
larger) and no lag. Prints "ok".

usage: describe_log_dirs.py BOOTSTRAP TOPIC  (TOPIC has 2 partitions; this writes to 0)
"""
import sys

from kafka import KafkaAdminClient, KafkaProducer

bootstrap, topic = sys.argv[1:3]
producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
for i in range(200):
    producer.send(topic, value=b"x" * 500, partition=0)
producer.flush(timeout=30)
producer.close()
admin = KafkaAdminClient(bootstrap_servers=bootstrap)
answers = admin.describe_log_dirs()
assert len(answers) == 1, answers
dirs = answers[0]["log_dirs"]
assert len(dirs) == 1 and dirs[0]["error_code"] == 0 and dirs[0]["log_dir"].endswith("/kafka"), dirs
topics = {t["name"]: t for t in dirs[0]["topics"]}
sizes = {p["partition_index"]: p for p in topics[topic]["partitions"]}
assert set(sizes) == {0, 1}, sizes
assert sizes[0]["partition_size"] > 100_000 > sizes[1]["partition_size"], sizes
assert all(p["offset_lag"] == 0 for p in sizes.values()), sizes
only = admin.describe_log_dirs(topic_partitions={topic: [1]})[0]["log_dirs"][0]["topics"]
assert [(t["name"], [p["partition_index"] for p in t["partitions"]]) for t in only] == [(topic, [1])], only
admin.close()
print("ok")
