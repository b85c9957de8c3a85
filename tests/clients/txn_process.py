"""Exactly-once consume-transform-produce through confluent-kafka, as a stream processor does:
a read_committed consumer in group GROUP reads topic `eos-in`, a transactional producer writes
each record's result to `eos-out` and commits the consumer's offsets in the same transaction
(send_offsets_to_transaction). Modes:

  prepare BOOTSTRAP COUNT   create both topics (2 partitions each) and write COUNT input records
  run BOOTSTRAP COUNT SECS [BATCH]
                            process until the output holds COUNT results or SECS pass, at most
                            BATCH records (default 100) per transaction, printing "progress N"
                            after each commit; errors a transaction cannot survive (a node
                            killed under it) abort it, and a fatal one restarts the producer,
                            as a processor does
  check BOOTSTRAP COUNT     the output read with read_committed holds each input's result
                            exactly once

Each mode prints "ok" when it succeeds.
"""
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

mode, bootstrap, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
IN, OUT, GROUP = "eos-in", "eos-out", "eos-group"


def prepare():
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, f in admin.create_topics([NewTopic(IN, 2, -1), NewTopic(OUT, 2, -1)]).items():
        f.result(timeout=30)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for i in range(count):
        p.produce(IN, key=str(i).encode(), value=str(i).encode())
    assert p.flush(60) == 0


def read_output(timeout):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"eos-check-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    c.assign([TopicPartition(OUT, 0), TopicPartition(OUT, 1)])
    got = []
    deadline = time.monotonic() + timeout
    quiet = None
    while time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is None or msg.error() is not None:
            if len(got) >= count:
                quiet = quiet or time.monotonic()
                if time.monotonic() - quiet > 2:
                    break
            continue
        quiet = None
        got.append(msg.value())
    c.close()
    return got


def new_producer():
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "eos-processor", "transaction.timeout.ms": 10000})
    p.init_transactions(60)
    return p


def run(seconds, batch):
    deadline = time.monotonic() + seconds
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": GROUP,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "session.timeout.ms": 10000,
        }
    )
    consumer.subscribe([IN])
    producer = new_producer()
    done = 0
    while time.monotonic() < deadline:
        msgs = [m for m in consumer.consume(batch, 0.5) if m.error() is None]
        if not msgs:
            if len(read_output(3)) >= count:
                break
            continue
        try:
            producer.begin_transaction()
            for m in msgs:
                producer.produce(OUT, key=m.key(), value=b"out-" + m.value(), partition=m.partition())
            positions = consumer.position(consumer.assignment())
            producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
            done += len(msgs)
            print(f"progress {done}", flush=True)
        except KafkaException as e:
            err = e.args[0]
            print(f"transaction failed: {err}", flush=True)
            if err.retriable():
                # librdkafka: a commit that timed out is resumed by calling it again.
                try:
                    producer.commit_transaction(60)
                    done += len(msgs)
                    print(f"progress {done}", flush=True)
                    continue
                except KafkaException as again:
                    err = again.args[0]
                    print(f"commit failed again: {err}", flush=True)
            if err.fatal():
                producer = new_producer()
            else:
                try:
                    producer.abort_transaction(30)
                except KafkaException as abort_error:
                    print(f"abort failed: {abort_error}", flush=True)
                    producer = new_producer()
            # Start again from the last committed offsets.
            committed = consumer.committed(consumer.assignment(), 30)
            for tp in committed:
                consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))
    consumer.close()
    print(f"processed {done}", flush=True)


def check():
    got = read_output(60)
    expected = sorted(b"out-" + str(i).encode() for i in range(count))
    dup = len(got) - len(set(got))
    missing = set(expected) - set(got)
    assert not dup and not missing and len(got) == count, f"{len(got)} results, {dup} duplicated, {len(missing)} missing"


{"prepare": prepare, "check": check}.get(mode, lambda: run(float(sys.argv[4]), int((sys.argv + ["100"])[5])))()
print("ok")
