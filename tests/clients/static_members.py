"""Static group membership (group.instance.id) as Kafka's coordinator treats it, through
confluent-kafka (librdkafka) consumers. Prints "ok".

- A member whose instance id was taken over by a new instance is fenced: its next heartbeat is
  answered FENCED_INSTANCE_ID and librdkafka raises its fatal "fenced" error, while the new
  instance keeps the partitions (no endless take-over between the two).
- The group's leader restarted under its instance id (closed without leaving, as a static
  member closes, and started again) rejoins without a rebalance: the other member keeps its
  partitions and hears of no revocation.

usage: static_members.py BOOTSTRAP TOPIC  (TOPIC has 4 partitions)
"""
import sys
import time

from confluent_kafka import Consumer, KafkaError

bootstrap, topic = sys.argv[1:3]
WAIT = 45.0


def member(group, instance, events):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.instance.id": instance,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
        "enable.auto.commit": False,
    })
    c.subscribe([topic],
                on_assign=lambda _c, ps: events.append(("assign", sorted(p.partition for p in ps))),
                on_revoke=lambda _c, ps: events.append(("revoke", sorted(p.partition for p in ps))))
    return c


def poll_until(consumers, pred, what):
    end = time.monotonic() + WAIT
    while time.monotonic() < end:
        for c in consumers:
            msg = c.poll(0.1)
            if msg is not None and msg.error() is not None:
                errors.append((c, msg.error()))
        if pred():
            return
    raise SystemExit(f"timed out waiting for {what}; errors {[(str(e)) for _, e in errors]}")


errors = []

# Fencing.
e1, e2 = [], []
c1 = member("static-fence", "inst-1", e1)
poll_until([c1], lambda: any(k == "assign" and ps for k, ps in e1), "the first instance's assignment")
c2 = member("static-fence", "inst-1", e2)
def fatal(e):
    return e.fatal() or e.code() == KafkaError._FATAL


poll_until([c1, c2], lambda: any(c is c1 and fatal(e) for c, e in errors), "the replaced instance to be fenced")
fenced = [e for c, e in errors if c is c1 and fatal(e)]
assert "fenced" in fenced[0].str().lower(), fenced[0]
poll_until([c2], lambda: any(k == "assign" and ps for k, ps in e2), "the new instance's assignment")
assert not any(c is c2 for c, _ in errors), [str(e) for c, e in errors if c is c2]
c2.close()
c1.close()

# A static leader restarted: no rebalance.
errors.clear()
ea, eb = [], []
a = member("static-leader", "inst-a", ea)
poll_until([a], lambda: ea and ea[-1] == ("assign", [0, 1, 2, 3]), "the first member (the leader) alone")
b = member("static-leader", "inst-b", eb)
poll_until([a, b], lambda: any(k == "assign" and ps for k, ps in eb) and len(ea) >= 3 and ea[-1][0] == "assign",
           "the two members' assignments")
held_by_b = [ps for k, ps in eb if k == "assign"][-1]
a.close()  # a static member closes without leaving the group
b_events = len(eb)
ea2 = []
a2 = member("static-leader", "inst-a", ea2)
poll_until([a2, b], lambda: any(k == "assign" and ps for k, ps in ea2), "the restarted leader's assignment")
for _ in range(30):  # three more seconds of both polling: a rebalance would show in b's callbacks
    for c in (a2, b):
        c.poll(0.05)
assert eb[b_events:] == [], f"the other member was rebalanced by the leader's restart: {eb[b_events:]}"
assert sorted(set([0, 1, 2, 3]) - set(held_by_b)) == [ps for k, ps in ea2 if k == "assign"][-1], (ea2, held_by_b)
assert not errors, [str(e) for _, e in errors]
a2.close()
b.close()
print("ok")
