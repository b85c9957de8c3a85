"""A quixstreams application in exactly-once mode, stateful: per key, a count of its records
over a one-hour tumbling window (state in RocksDB, with its changelog topic), each update
written to `quix-counts`. Needs quixstreams (run with the interpreter of the virtualenv
tests/run.sh makes for it, whose confluent-kafka quixstreams pins).

  prepare BOOTSTRAP COUNT         write COUNT records to `quix-in`, keys k0..k9, one window
  run BOOTSTRAP STATE_DIR SECS    run the application for SECS seconds (killed or not)
  check BOOTSTRAP COUNT           read `quix-counts` with read_committed: each key's last
                                  count is its exact number of inputs ("ok"), else prints
                                  "incomplete" with the counts

Each mode but run prints "ok" when it holds.
"""
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

mode, bootstrap = sys.argv[1], sys.argv[2]
KEYS = 10


def prepare(count):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, f in admin.create_topics([NewTopic("quix-in", 2, -1)]).items():
        f.result(timeout=30)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    now = int(time.time() * 1000)
    for i in range(count):
        while True:
            try:
                p.produce("quix-in", key=f"k{i % KEYS}".encode(), value=b"1", timestamp=now)
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(60) == 0
    print("ok")


def run(state_dir, seconds):
    from datetime import timedelta

    from quixstreams import Application

    app = Application(
        broker_address=bootstrap,
        consumer_group="quix-eos",
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        state_dir=state_dir,
        commit_interval=0.5,
        loglevel="WARNING",
        # A killed instance's group membership and open transaction end within seconds.
        consumer_extra_config={"session.timeout.ms": 6000},
        producer_extra_config={"transaction.timeout.ms": 10000},
    )
    source = app.topic("quix-in", key_deserializer="str", value_deserializer="str")
    sink = app.topic("quix-counts", key_serializer="str", value_serializer="json")
    sdf = app.dataframe(source)
    sdf = sdf.tumbling_window(timedelta(hours=1)).count().current()
    sdf = sdf.apply(lambda w: {"count": w["value"]})
    sdf.to_topic(sink)
    app.run(timeout=seconds)


def check(count):
    from last_counts import check_counts

    check_counts(bootstrap, "quix-counts", count, KEYS, lambda v: v["count"])


if mode == "prepare":
    prepare(int(sys.argv[3]))
elif mode == "run":
    run(sys.argv[3], float(sys.argv[4]))
else:
    check(int(sys.argv[3]))
