"""Transactions through aiokafka: a transactional producer commits and aborts transactions in
turn (each transaction's records sent before it ends); an aiokafka read_committed consumer sees
exactly the committed records, in order, and a read_uncommitted one sees all of them. Prints
"ok".

usage: txn_aiokafka.py BOOTSTRAP [TXNS]
"""
import asyncio
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap = sys.argv[1]
txns = int(sys.argv[2]) if len(sys.argv) > 2 else 10
topic = "txn-aio"
per_txn = 5


async def consume(isolation, expected):
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation, auto_offset_reset="earliest")
    await consumer.start()
    consumer.assign([TopicPartition(topic, 0)])
    await consumer.seek_to_beginning()
    got = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=2000)
            records = [r for rs in batch.values() for r in rs]
            if not records and len(got) >= expected:
                break
            if not records and len(got) < expected:
                # Give the log time to settle, once; then it is a failure.
                more = await consumer.getmany(timeout_ms=5000)
                records = [r for rs in more.values() for r in rs]
                if not records:
                    break
            got.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return got


async def main():
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, f in admin.create_topics([NewTopic(topic, 1, -1)]).items():
        f.result(timeout=30)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id="aio-txn")
    await producer.start()
    committed = []
    try:
        # Offsets committed in a transaction (TxnOffsetCommit as aiokafka sends it, without
        # member) for a group with a member: applied when it commits, dropped when it aborts.
        tp = TopicPartition(topic, 0)
        group = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="aio-group", enable_auto_commit=False)
        await group.start()
        while not group.assignment():
            await group.getmany(timeout_ms=200)
        for offset, commit in ((3, True), (7, False)):
            await producer.begin_transaction()
            await producer.send_offsets_to_transaction({tp: offset}, "aio-group")
            if commit:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()
        for t in range(txns):
            await producer.begin_transaction()
            values = [f"{t}-{i}".encode() for i in range(per_txn)]
            futures = [await producer.send(topic, v, partition=0) for v in values]
            await asyncio.gather(*futures)
            if t % 2 == 0:
                await producer.commit_transaction()
                committed.extend(values)
            else:
                await producer.abort_transaction()
    finally:
        await producer.stop()
    seen = await consume("read_committed", len(committed))
    assert seen == committed, f"read_committed saw {seen}, committed {committed}"
    try:
        offset = await group.committed(TopicPartition(topic, 0))
    finally:
        await group.stop()
    assert offset == 3, f"the group's committed offset is {offset}: the aborted commit must not apply"
    everything = await consume("read_uncommitted", txns * per_txn)
    assert len(everything) == txns * per_txn, f"read_uncommitted saw {len(everything)} of {txns * per_txn}"
    print("ok")


asyncio.run(main())
