"""ElectLeaders through confluent-kafka's AdminClient on a cluster whose automatic leader
rebalance is off. Prints "ok".

usage: elect_leaders.py BOOTSTRAP create   creates "elect" (3 partitions, preferred replicas
                                            1, 2, 3) and waits for a leader of each
       elect_leaders.py BOOTSTRAP elect    a preferred election of every partition: those not
                                            led by their preferred replica are, after it
                                            (no error); the others answer ELECTION_NOT_NEEDED;
                                            an unclean election is not needed anywhere
"""
import sys
import time

from confluent_kafka import ElectionType, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, phase = sys.argv[1:3]
admin = AdminClient({"bootstrap.servers": bootstrap})
wanted = [[1, 2, 3], [2, 3, 1], [3, 1, 2]]


def leaders():
    deadline = time.monotonic() + 30
    while True:
        topic = admin.list_topics(topic="elect", timeout=10).topics["elect"]
        got = {p.id: p.leader for p in topic.partitions.values()}
        if len(got) == len(wanted) and all(l >= 0 for l in got.values()):
            return got
        assert time.monotonic() < deadline, f"no leader for every partition: {got}"
        time.sleep(0.2)


if phase == "create":
    for _, f in admin.create_topics([NewTopic("elect", num_partitions=3, replica_assignment=wanted)]).items():
        f.result(timeout=30)
    print("leaders", leaders())
    print("ok")
    sys.exit(0)

def code(error):
    # A partition's error: a KafkaError, or a KafkaException around one.
    return error.code() if isinstance(error, KafkaError) else error.args[0].code()


before = leaders()
moved = [p for p in range(3) if before[p] != wanted[p][0]]
assert moved, f"every partition is led by its preferred replica already: {before}"
partitions = [TopicPartition("elect", p) for p in range(3)]
result = admin.elect_leaders(ElectionType.PREFERRED, partitions).result(timeout=60)
for tp, error in result.items():
    if tp.partition in moved:
        assert error is None, (tp, error)
    else:
        assert error is not None and code(error) == KafkaError.ELECTION_NOT_NEEDED, (tp, error)
after = leaders()
assert all(after[p] == wanted[p][0] for p in range(3)), (before, after)
unclean = admin.elect_leaders(ElectionType.UNCLEAN, partitions).result(timeout=60)
assert all(e is not None and code(e) == KafkaError.ELECTION_NOT_NEEDED for e in unclean.values()), unclean
print("moved", moved, "ok")
