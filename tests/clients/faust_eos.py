"""A faust-streaming agent in exactly_once mode: a table counting each key's records (its
changelog topic holding the state), each new count sent to `faust-counts`. Needs
faust-streaming (run with the interpreter of the virtualenv tests/run.sh makes).

  prepare BOOTSTRAP COUNT   write COUNT records to `faust-in` (2 partitions), keys k0..k9
  worker BOOTSTRAP          run the worker until killed
  check BOOTSTRAP COUNT     read `faust-counts` with read_committed: "ok" if each key's last
                            count is its exact number of inputs, else "incomplete" and them
"""
import sys

mode, bootstrap = sys.argv[1], sys.argv[2]
KEYS = 10


def prepare(count):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, f in admin.create_topics([NewTopic("faust-in", 2, -1), NewTopic("faust-counts", 2, -1)]).items():
        f.result(timeout=30)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for i in range(count):
        while True:
            try:
                p.produce("faust-in", key=f"k{i % KEYS}".encode(), value=b'"1"')
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(60) == 0
    print("ok")


def worker():
    import faust

    app = faust.App(
        "faust-eos",
        broker=f"kafka://{bootstrap}",
        processing_guarantee="exactly_once",
        store="memory://",
        topic_partitions=2,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        web_enabled=False,
    )
    source = app.topic("faust-in", key_type=str, value_type=str, partitions=2)
    sink = app.topic("faust-counts", key_type=str, value_type=int, partitions=2)
    counts = app.Table("faust-count", default=int, partitions=2)

    @app.agent(source)
    async def count(stream):
        async for key, _ in stream.items():
            counts[key] += 1
            await sink.send(key=key, value=counts[key])

    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()


def check(count):
    from last_counts import check_counts

    check_counts(bootstrap, "faust-counts", count, KEYS, lambda v: v)


if mode == "prepare":
    prepare(int(sys.argv[3]))
elif mode == "worker":
    worker()
else:
    check(int(sys.argv[3]))
