"""confluent-kafka over a topic of many partitions: an idempotent producer (acks=all) writes PER
messages to every partition, then a consumer assigned every partition reads them all back.
Exits non-zero unless every partition holds exactly its messages, in order. (Idempotence: a
producer that retries a request whose answer it did not get, a node slowed down by a loaded
machine, must not store the batch twice.)

usage: many_partitions.py BOOTSTRAP TOPIC PARTITIONS PER
"""
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

bootstrap, topic, partitions, per = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
errors = []
acked = 0


def delivered(err, msg):
    global acked
    if err is not None:
        errors.append(str(err))
    else:
        acked += 1


producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 20})
for i in range(per):
    for p in range(partitions):
        while True:
            try:
                producer.produce(topic, value=f"{p}:{i}".encode(), partition=p, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
remaining = producer.flush(120)
if errors or remaining or acked != partitions * per:
    sys.exit(f"produce: {acked} acknowledged of {partitions * per}, {remaining} unsent, errors {errors[:5]}")

consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "many", "enable.auto.commit": False})
consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
seen = {p: [] for p in range(partitions)}
read = 0
deadline = time.time() + 180
while read < partitions * per and time.time() < deadline:
    for msg in consumer.consume(10000, timeout=1.0):
        if msg.error():
            continue
        seen[msg.partition()].append(msg.value().decode())
        read += 1
consumer.close()
wrong = [p for p in range(partitions) if seen[p] != [f"{p}:{i}" for i in range(per)]]
if wrong:
    sys.exit(f"{len(wrong)} partitions do not hold exactly their messages, e.g. {wrong[0]}: {seen[wrong[0]][:5]}")
print(f"{read} messages over {partitions} partitions")
