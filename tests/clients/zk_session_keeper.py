"""A kazoo client that keeps one session through a cluster's rolling restart.

usage: zk_session_keeper.py HOSTS STOPFILE MAX_SECONDS
Connects to HOSTS (every node), creates an ephemeral /rolling/keeper-<pid> and a watch on it,
then until STOPFILE exists (or MAX_SECONDS pass) writes a counter to /rolling/counter and
reads it back every 50 ms; a connection loss (the node it talks to stopping) is counted and
the operation retried on the next turn. At the end it checks the session never expired (no
LOST state, the same session id), the ephemeral is still there and owned by the session, and
the counter holds the last value written. Prints "session kept: N writes, M connection
losses, K reconnections" (exit 0) or "FAIL: ..." (exit 1).
"""
import os
import sys
import time

from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss, SessionExpiredError
from kazoo.protocol.states import KazooState

hosts, stopfile, max_seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
states = []
zk = KazooClient(hosts=hosts, timeout=10)
zk.add_listener(lambda state: states.append(state))
zk.start(timeout=30)
session = zk.client_id[0]
zk.ensure_path("/rolling")
me = f"/rolling/keeper-{os.getpid()}"
zk.create(me, b"alive", ephemeral=True)
events = []
zk.exists(me, watch=lambda event: events.append(event))
if not zk.exists("/rolling/counter"):
    zk.create("/rolling/counter", b"0")
writes, losses, last = 0, 0, None
deadline = time.time() + max_seconds
while time.time() < deadline and not os.path.exists(stopfile):
    try:
        value = str(writes + 1).encode()
        zk.set("/rolling/counter", value)
        last = value
        writes += 1
        assert zk.get("/rolling/counter")[0] == value
    except ConnectionLoss:
        losses += 1
        time.sleep(0.2)
    except SessionExpiredError:
        print("FAIL: the session expired", flush=True)
        sys.exit(1)
    time.sleep(0.05)
failures = []
if KazooState.LOST in states:
    failures.append(f"the session was lost (states {states})")
if zk.client_id[0] != session:
    failures.append("the session id changed")
stat = zk.exists(me)
if stat is None or stat.ephemeralOwner != session:
    failures.append(f"the ephemeral is gone or not the session's: {stat}")
if last is not None and zk.get("/rolling/counter")[0] != last:
    failures.append("the counter lost a write")
# kazoo hands a watch the connection's state changes too (type NONE): only a change of the
# node itself counts.
changes = [e for e in events if e.type != "NONE"]
if changes:
    failures.append(f"the ephemeral's watch fired: {changes}")
zk.stop()
reconnections = states.count(KazooState.SUSPENDED)
if failures:
    print("FAIL: " + "; ".join(failures), flush=True)
    sys.exit(1)
print(f"session kept: {writes} writes, {losses} connection losses, {reconnections} reconnections", flush=True)
