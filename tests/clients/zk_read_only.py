"""ZooKeeper's read-only mode with kazoo (read_only=True) against one node of a cluster.

usage:
  zk_read_only.py prepare HOST         writes /read-only-data = b"before" (a read-write client)
  zk_read_only.py run HOST READY       a read-only client, once HOST's peers are stopped:
      connects in read-only mode (CONNECTED_RO), reads what was written before, and gets
      NotReadOnlyCallError for create, set and delete, while a client that does not allow
      read-only mode gets no session; then writes READY (a file) and waits
      (bounded) for the node's peers to be back: the client reconnects read-write (a new
      session) and its writes work. Prints "read-only checks passed" and "read-write again".
Every wait is bounded (60 s).
"""
import sys
import time

from kazoo.client import KazooClient
from kazoo.exceptions import NotReadOnlyCallError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KeeperState

DEADLINE = 60


def wait_for(what, check):
    end = time.time() + DEADLINE
    while time.time() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"FAIL: {what} within {DEADLINE} s")


def prepare(host):
    zk = KazooClient(hosts=host, timeout=10)
    zk.start(timeout=30)
    zk.ensure_path("/read-only-data")
    zk.set("/read-only-data", b"before")
    zk.stop()
    print("prepared")


def run(host, ready):
    zk = KazooClient(hosts=host, read_only=True, timeout=10)
    zk.start(timeout=DEADLINE)
    wait_for("a read-only connection", lambda: zk.client_state == KeeperState.CONNECTED_RO)
    data, stat = zk.get("/read-only-data")
    assert data == b"before", data
    assert zk.exists("/read-only-data") is not None
    assert "read-only-data" in zk.get_children("/")
    for write in (
        lambda: zk.create("/read-only-new", b"x"),
        lambda: zk.set("/read-only-data", b"after"),
        lambda: zk.delete("/read-only-data"),
    ):
        try:
            write()
        except NotReadOnlyCallError:
            continue
        raise SystemExit("FAIL: a write on a read-only session was not refused")
    read_only_session = zk.client_id[0]
    # A client that does not allow read-only mode gets no session from a node out of its
    # quorum.
    plain = KazooClient(hosts=host, timeout=5)
    try:
        plain.start(timeout=3)
        raise SystemExit("FAIL: a read-write session from a node without a majority")
    except KazooTimeoutError:
        pass
    finally:
        plain.stop()
    print("read-only checks passed", flush=True)
    open(ready, "w").close()
    # The peers come back: the node ends read-only sessions and the client finds it read-write.
    wait_for("a read-write connection", lambda: zk.client_state == KeeperState.CONNECTED)
    assert zk.client_id[0] != read_only_session, "a read-only session is not carried over"
    zk.set("/read-only-data", b"after")
    assert zk.get("/read-only-data")[0] == b"after"
    zk.stop()
    print("read-write again", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2])
    else:
        run(sys.argv[2], sys.argv[3])
