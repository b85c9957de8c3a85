"""The check shared by the stream-processor tests (quix_eos.py, faust_eos.py): a topic of
per-key counts read whole with read_committed, each key's last count against the exact number
of inputs of that key."""
import json
import time

from confluent_kafka import Consumer, TopicPartition


def check_counts(bootstrap, topic, count, keys, count_of):
    """Prints "ok" if each key k0..k{keys-1} last counts its inputs (input i has key i mod
    keys), else "incomplete" with what was read; `count_of` takes a value's JSON."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-check-{time.monotonic_ns()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    parts = c.list_topics(topic, timeout=30).topics[topic].partitions
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    last = {}
    idle = time.monotonic()
    while time.monotonic() - idle < 3:
        for m in c.consume(1000, 0.5):
            if m.error() is None:
                last[m.key().decode()] = count_of(json.loads(m.value()))
                idle = time.monotonic()
    c.close()
    expected = {f"k{i}": len(range(i, count, keys)) for i in range(keys)}
    print("ok" if last == expected else f"incomplete {sorted(last.items())} expected {sorted(expected.items())}")
