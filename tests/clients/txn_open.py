"""Leaves a transaction open: a confluent-kafka transactional producer (transactional.id ID,
transaction.timeout.ms TIMEOUT) begins a transaction, writes one record to partition 0 of TOPIC
and exits without ending it. Prints "ok".

usage: txn_open.py BOOTSTRAP TOPIC ID TIMEOUT
"""
import os
import sys

from confluent_kafka import Producer

bootstrap, topic, txn_id, timeout = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "transaction.timeout.ms": timeout})
p.init_transactions(30)
p.begin_transaction()
p.produce(topic, value=b"open", partition=0)
assert p.flush(30) == 0
print("ok", flush=True)
# No destructor: the transaction stays open until the coordinator times it out.
os._exit(0)
