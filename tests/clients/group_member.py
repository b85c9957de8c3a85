"""A consumer-group member, or the producer feeding it.

usage:
  group_member.py consume BOOTSTRAP TOPIC GROUP OUT STOPFILE [CLIENT]
      Joins GROUP (confluent-kafka's defaults but a 6 s session timeout, auto commit off),
      writes "partition offset value" for every message to OUT (flushed at once), and commits
      what it has written: every 50 messages, every 0.5 s, and before its partitions are
      taken away (on_revoke). So a member that stops gracefully, or is killed while idle,
      leaves nothing consumed twice. Exits (closing: LeaveGroup) once STOPFILE exists.
      Prints "assigned p,q,..." lines to stderr as its assignment changes.
      CLIENT=kafka-python or aiokafka consumes with that client instead (same behaviour).
      Environment: GROUP_MEMBER_STRATEGY sets confluent-kafka's partition.assignment.strategy
      (e.g. cooperative-sticky); GROUP_MEMBER_INSTANCE makes it a static member
      (group.instance.id); GROUP_MEMBER_AUTOCOMMIT=1 keeps confluent-kafka's defaults (auto
      commit every 5 s, default session timeout) and commits nothing itself.
  group_member.py produce BOOTSTRAP TOPIC FIRST COUNT
      Produces values v<FIRST>..v<FIRST+COUNT-1> (keys spread them over the partitions) with
      acks=all and retries, and waits for every acknowledgement.
"""
import os
import sys
import time


def produce(bootstrap, topic, first, count):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    failed = []

    def delivered(err, msg):
        if err is not None:
            failed.append(err)

    for i in range(first, first + count):
        while True:
            try:
                producer.produce(topic, key=str(i).encode(), value=f"v{i}".encode(), on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(60)
    if left or failed:
        sys.exit(f"{left} unacknowledged, {len(failed)} failed: {failed[:3]}")


def consume_confluent(bootstrap, topic, group, out, stopfile):
    from confluent_kafka import Consumer, TopicPartition

    auto = os.environ.get("GROUP_MEMBER_AUTOCOMMIT") == "1"
    config = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"}
    if not auto:
        config.update({"enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    if os.environ.get("GROUP_MEMBER_STRATEGY"):
        config["partition.assignment.strategy"] = os.environ["GROUP_MEMBER_STRATEGY"]
    if os.environ.get("GROUP_MEMBER_INSTANCE"):
        config["group.instance.id"] = os.environ["GROUP_MEMBER_INSTANCE"]
    consumer = Consumer(config)
    positions = {}

    def commit():
        if positions and not auto:
            offsets = [TopicPartition(topic, p, o) for p, o in positions.items()]
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
                positions.clear()
            except Exception as e:  # noqa: BLE001 - a failed commit is retried on the next round
                print(f"commit failed: {e}", file=sys.stderr, flush=True)

    def on_assign(c, partitions):
        print("assigned " + ",".join(str(p.partition) for p in partitions), file=sys.stderr, flush=True)

    def on_revoke(c, partitions):
        commit()
        print("revoked " + ",".join(str(p.partition) for p in partitions), file=sys.stderr, flush=True)

    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    last_commit = time.time()
    since = 0
    with open(out, "a") as f:
        while not os.path.exists(stopfile):
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                f.write(f"{msg.partition()} {msg.offset()} {msg.value().decode()}\n")
                f.flush()
                positions[msg.partition()] = msg.offset() + 1
                since += 1
            if since >= 50 or time.time() - last_commit > 0.5:
                commit()
                since = 0
                last_commit = time.time()
        commit()
    consumer.close()


def consume_kafka_python(bootstrap, topic, group, out, stopfile):
    import logging

    # The client's own warnings and errors (a fetch or metadata failure it retries) go to
    # stderr, where a failing test prints them.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="kafka-python %(levelname)s %(name)s: %(message)s")
    from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
    from kafka.consumer.subscription_state import ConsumerRebalanceListener

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    positions = {}

    def offsets():
        return {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in positions.items()}

    def commit():
        if positions:
            try:
                consumer.commit(offsets())
                positions.clear()
            except Exception as e:  # noqa: BLE001
                print(f"commit failed: {e}", file=sys.stderr, flush=True)

    def assigned_line(assigned):
        print("assigned " + ",".join(str(p.partition) for p in assigned), file=sys.stderr, flush=True)

    try:
        # kafka-python 3 runs listeners on its IO thread, where a blocking commit() fails
        # ("Cannot block on net.run() from the IO thread itself"): its async listener awaits
        # the commit instead.
        from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
    except ImportError:
        AsyncConsumerRebalanceListener = None

    if AsyncConsumerRebalanceListener is not None:

        class Listener(AsyncConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                if positions:
                    try:
                        await consumer.commit_async(offsets())
                        positions.clear()
                    except Exception as e:  # noqa: BLE001
                        print(f"commit failed: {e}", file=sys.stderr, flush=True)

            async def on_partitions_assigned(self, assigned):
                assigned_line(assigned)

    else:

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                commit()

            def on_partitions_assigned(self, assigned):
                assigned_line(assigned)

    consumer.subscribe([topic], listener=Listener())
    last_commit = time.time()
    with open(out, "a") as f:
        while not os.path.exists(stopfile):
            for tp, messages in consumer.poll(timeout_ms=200).items():
                for msg in messages:
                    f.write(f"{tp.partition} {msg.offset} {msg.value.decode()}\n")
                    f.flush()
                    positions[tp.partition] = msg.offset + 1
            if time.time() - last_commit > 0.5:
                commit()
                last_commit = time.time()
        commit()
    consumer.close()


def consume_aiokafka(bootstrap, topic, group, out, stopfile):
    import asyncio

    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
    from aiokafka.structs import OffsetAndMetadata, TopicPartition

    async def main():
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )
        positions = {}

        async def commit():
            if positions:
                offsets = {TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in positions.items()}
                try:
                    await consumer.commit(offsets)
                    positions.clear()
                except Exception as e:  # noqa: BLE001
                    print(f"commit failed: {e}", file=sys.stderr, flush=True)

        class Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                await commit()

            async def on_partitions_assigned(self, assigned):
                print("assigned " + ",".join(str(p.partition) for p in assigned), file=sys.stderr, flush=True)

        await consumer.start()
        consumer.subscribe([topic], listener=Listener())
        last_commit = time.time()
        try:
            with open(out, "a") as f:
                while not os.path.exists(stopfile):
                    batches = await consumer.getmany(timeout_ms=200)
                    for tp, messages in batches.items():
                        for msg in messages:
                            f.write(f"{tp.partition} {msg.offset} {msg.value.decode()}\n")
                            f.flush()
                            positions[tp.partition] = msg.offset + 1
                    if time.time() - last_commit > 0.5:
                        await commit()
                        last_commit = time.time()
                await commit()
        finally:
            await consumer.stop()

    asyncio.run(main())


if __name__ == "__main__":
    if sys.argv[1] == "produce":
        produce(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        bootstrap, topic, group, out, stopfile = sys.argv[2:7]
        client = sys.argv[7] if len(sys.argv) > 7 else "confluent"
        if client == "kafka-python":
            consume_kafka_python(bootstrap, topic, group, out, stopfile)
        elif client == "aiokafka":
            consume_aiokafka(bootstrap, topic, group, out, stopfile)
        else:
            consume_confluent(bootstrap, topic, group, out, stopfile)
