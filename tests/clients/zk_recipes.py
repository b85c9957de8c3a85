"""The kazoo recipes against a ZooKeeper 3.8 server, with assertions.

usage:
  zk_recipes.py HOSTS [--kill-pid PID --kill-host HOST] [--verbose]
      Runs Lock, Election, Barrier, DoubleBarrier, Counter, Queue, LockingQueue, Party,
      ShallowParty, Semaphore and ReadLock/WriteLock with two or three clients under a fresh
      /zk_recipes_<pid>_<time> (deleted at the end). Every wait is bounded.
      Prints one line per recipe, "FAIL ..." with what was checked on a failure, and at the end
      "zk_recipes: N checks passed" (exit 0) or "... M FAILED" (exit 1).

      --kill-pid PID --kill-host HOST (alias --after-kill-pid): failover first. A client
      connects with HOST first in its list (randomize_hosts=False; HOSTS must list HOST and at
      least one other server), creates an ephemeral and takes a Lock, then the script sends
      SIGKILL to PID (the server at HOST). It asserts the client reconnects to another server of
      HOSTS with the same session id, never seeing LOST, that a fresh client sees the ephemeral
      still owned by that session and the lock still held by it; then all recipes run.

Validated against a real ZooKeeper 3.8.0 ensemble (perf/zk-anchor.sh), 1 and 3 servers,
including killing a follower and killing the leader of the 3-server ensemble.
"""
import argparse
import logging
import os
import signal
import sys
import threading
import time
import traceback

from kazoo import exceptions as ke
from kazoo.client import KazooClient
from kazoo.protocol.states import KazooState
from zk_checks import STATE, WAIT, CheckFailed, check, eq, finish, run_section, wait_for

HOSTS = ""






def connect(hosts=None, **kw):
    c = KazooClient(hosts=hosts or HOSTS, timeout=10, **kw)
    c.start(timeout=15)
    STATE.clients.append(c)
    return c


class Worker(threading.Thread):
    """A daemon thread that keeps fn's result or exception; join() is bounded."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self.fn, self.args = fn, args
        self.result = self.error = None
        self.done = threading.Event()
        self.start()

    def run(self):
        try:
            self.result = self.fn(*self.args)
        except BaseException as e:  # noqa: BLE001 - re-raised by finish()
            self.error = e
        finally:
            self.done.set()

    def finish(self, what, timeout=WAIT):
        check(self.done.wait(timeout), f"{what}: still running after {timeout:.0f} s")
        if self.error is not None:
            raise CheckFailed(f"{what}: {type(self.error).__name__}: {self.error}")
        return self.result


def still_blocked(worker, what, hold=0.3):
    """The worker must not finish within `hold` seconds (it is waiting on ZooKeeper)."""
    check(not worker.done.wait(hold), f"{what}: returned early ({worker.result!r}/{worker.error!r})")


# ---------------------------------------------------------------------------------------------

def rec_lock(c1, c2, base):
    path, counter = base + "/lock", base + "/lock-counter"
    c1.create(counter, b"0")
    guard = threading.Lock()
    state = {"inside": 0, "violations": [], "order": []}
    rounds = 10

    def worker(client, ident):
        lock = client.Lock(path, ident)
        for _ in range(rounds):
            check(lock.acquire(timeout=WAIT), f"{ident} acquires the lock")
            try:
                with guard:
                    state["inside"] += 1
                    if state["inside"] != 1:
                        state["violations"].append((ident, state["inside"]))
                    state["order"].append(ident)
                holders = lock.contenders()
                if not holders or holders[0] != ident:
                    state["violations"].append((ident, "contenders", holders))
                v = int(client.get(counter)[0])
                time.sleep(0.002)
                client.set(counter, str(v + 1).encode())
                with guard:
                    state["inside"] -= 1
            finally:
                lock.release()
        return True

    w1, w2 = Worker(worker, c1, "one"), Worker(worker, c2, "two")
    w1.finish("lock worker one")
    w2.finish("lock worker two")
    eq(state["violations"], [], "mutual exclusion: one holder at a time, holder is contenders()[0]")
    c1.sync(counter)  # another session's writes: visible after a sync (ZooKeeper's promise)
    eq(int(c1.get(counter)[0]), 2 * rounds, "read-modify-write under the lock loses nothing")
    eq(sorted(set(state["order"])), ["one", "two"], "both clients held the lock")

    l1, l2 = c1.Lock(path, "one"), c2.Lock(path, "two")
    check(l1.acquire(timeout=WAIT), "one takes the lock")
    check(l1.is_acquired, "is_acquired")
    eq(l2.acquire(blocking=False), False, "non-blocking acquire of a held lock")
    t = time.monotonic()
    try:
        l2.acquire(timeout=0.5)
        raise CheckFailed("acquire(timeout=0.5) of a held lock returned")
    except ke.LockTimeout:
        check(time.monotonic() - t < 5, "LockTimeout after the timeout")
    waiter = Worker(lambda: l2.acquire(timeout=WAIT))
    wait_for(lambda: l1.contenders() == ["one", "two"], "contenders: holder then waiter")
    still_blocked(waiter, "waiter blocks while the lock is held")
    l1.release()
    eq(waiter.finish("waiter gets the lock after release"), True, "waiter acquired")
    c1.sync(path)
    eq(c1.Lock(path).contenders(), ["two"], "contenders after the hand-over")
    l2.release()
    c1.sync(path)
    eq(c1.Lock(path).contenders(), [], "no contenders after release")


def rec_election(c1, c2, base):
    path = base + "/election"
    guard = threading.Lock()
    state = {"running": 0, "max": 0, "order": []}
    stop = {name: threading.Event() for name in ("one", "two", "three")}

    def lead(name):
        with guard:
            state["running"] += 1
            state["max"] = max(state["max"], state["running"])
            state["order"].append(name)
        stop[name].wait(WAIT)
        with guard:
            state["running"] -= 1

    e1, e2, e3 = c1.Election(path, "one"), c2.Election(path, "two"), c1.Election(path, "three")
    t1 = Worker(e1.run, lead, "one")
    wait_for(lambda: state["order"] == ["one"], "first contender becomes leader")
    t2 = Worker(e2.run, lead, "two")
    wait_for(lambda: e1.contenders() == ["one", "two"], "second contender waits in line")
    t3 = Worker(e3.run, lead, "three")
    wait_for(lambda: e1.contenders() == ["one", "two", "three"], "third contender in line")
    still_blocked(t2, "second contender does not lead while the first does")
    e3.cancel()
    t3.finish("cancelled contender returns")
    wait_for(lambda: e1.contenders() == ["one", "two"], "cancelled contender left the line")
    eq(state["order"], ["one"], "only the first has led")
    stop["one"].set()  # the leader steps down: its function returns, the lock is released
    t1.finish("first leader's run() returns")
    wait_for(lambda: state["order"] == ["one", "two"], "second becomes leader after the first")
    eq(e2.contenders(), ["two"], "the new leader is the only contender")
    stop["two"].set()
    t2.finish("second leader's run() returns")
    eq(state["max"], 1, "never two leaders at once")
    eq(state["order"], ["one", "two"], "leaders in order, the cancelled one never led")


def rec_barrier(c1, c2, base):
    path = base + "/barrier"
    b2 = c2.Barrier(path)
    eq(b2.wait(timeout=1), True, "wait on an absent barrier returns at once")
    b1 = c1.Barrier(path)
    b1.create()
    eq(b2.wait(timeout=0.3), False, "wait with a timeout on a raised barrier -> False")
    waiter = Worker(b2.wait, WAIT)
    still_blocked(waiter, "waiter blocks while the barrier is up")
    eq(b1.remove(), True, "barrier removed")
    eq(waiter.finish("waiter released"), True, "wait returns True once the barrier is removed")


def rec_double_barrier(c1, c2, base):
    path = base + "/double"
    d1, d2 = c1.DoubleBarrier(path, 2, "one"), c2.DoubleBarrier(path, 2, "two")
    left_gate = threading.Event()

    def member(d):
        d.enter()
        entered = d.participating
        left_gate.wait(WAIT)
        return entered

    m1 = Worker(member, d1)
    still_blocked(m1, "enter blocks until both members entered")
    m2 = Worker(member, d2)
    wait_for(lambda: d1.participating and d2.participating, "both entered")
    left_gate.set()
    eq(m1.finish("member one"), True, "member one entered")
    eq(m2.finish("member two"), True, "member two entered")
    l1 = Worker(d1.leave)
    still_blocked(l1, "leave blocks until the other member leaves")
    l2 = Worker(d2.leave)
    l1.finish("member one left")
    l2.finish("member two left")
    eq((d1.participating, d2.participating), (False, False), "both left")
    c1.sync(path)
    eq(c1.get_children(path), [], "barrier node empty after leave")


def rec_counter(c1, c2, c3, base):
    path = base + "/counter"
    per = 50

    def bump(client):
        counter = client.Counter(path)
        for _ in range(per):
            counter += 1
        return counter.post_value

    w1, w2 = Worker(bump, c1), Worker(bump, c2)
    w1.finish("increments from client one")
    w2.finish("increments from client two")
    c3.sync(path)
    counter = c3.Counter(path)
    eq(counter.value, 2 * per, "2 clients x 50 concurrent increments")
    counter -= 5
    eq((counter.pre_value, counter.post_value), (100, 95), "decrement pre/post values")
    c1.sync(path)
    eq(c1.Counter(path).value, 95, "another client reads the new value")
    f = c1.Counter(base + "/fcounter", default=1.5)
    f += 2.25
    eq(f.value, 3.75, "float counter")


def rec_queue(c1, c2, base):
    path = base + "/queue"
    q1, q2 = c1.Queue(path), c2.Queue(path)
    for v in (b"a", b"b", b"c"):
        q1.put(v)
    q1.put(b"urgent", priority=10)
    c2.sync(path)
    eq(len(q2), 4, "queue length seen by the other client")
    got = [q2.get() for _ in range(4)]
    eq(got, [b"urgent", b"a", b"b", b"c"], "priority first, then put order")
    eq(q2.get(), None, "get on an empty queue -> None")
    items = [f"i{i}".encode() for i in range(20)]
    w = Worker(lambda: [q1.put(v) for v in items])
    w.finish("producer")
    out = []
    end = time.monotonic() + WAIT
    while len(out) < len(items) and time.monotonic() < end:
        v = q2.get()
        if v is not None:
            out.append(v)
    eq(out, items, "20 items out in the order put in")


def rec_locking_queue(c1, c2, c3, base):
    path = base + "/lqueue"
    lq1, lq2, lq3 = c1.LockingQueue(path), c2.LockingQueue(path), c3.LockingQueue(path)
    lq1.put_all([b"x1", b"x2", b"x3"])
    lq1.put(b"x4")
    c2.sync(path)
    eq(len(lq2), 4, "locking queue length")
    eq(lq2.get(timeout=WAIT), b"x1", "first item to the first consumer")
    check(lq2.holds_lock(), "consumer holds the item's lock")
    c1.sync(path)
    eq(lq1.get(timeout=WAIT), b"x2", "a locked item is skipped by another consumer")
    eq(lq2.get(timeout=WAIT), b"x1", "get again before consume returns the same item")
    eq(lq2.release(), True, "release without consuming")
    c3.sync(path)
    eq(lq3.get(timeout=WAIT), b"x1", "released item is available again, still first")
    eq(lq3.consume(), True, "consume x1")
    eq(lq1.consume(), True, "consume x2")
    eq([lq2.get(timeout=WAIT), lq2.consume(), lq2.get(timeout=WAIT), lq2.consume()],
       [b"x3", True, b"x4", True], "remaining items in order")
    eq(len(lq1), 0, "queue empty")
    t = time.monotonic()
    eq(lq1.get(timeout=0.3), None, "get on an empty locking queue times out -> None")
    check(time.monotonic() - t < 5, "the timeout is honoured")
    late = Worker(lq1.get, WAIT)
    still_blocked(late, "get blocks on an empty queue")
    lq3.put(b"late")
    eq(late.finish("blocked get"), b"late", "blocked get wakes on put")
    eq(lq1.consume(), True, "consume the late item")


def rec_party(c1, c2, c3, base):
    for kind in ("Party", "ShallowParty"):
        path = f"{base}/{kind.lower()}"
        p1, p2 = getattr(c1, kind)(path, "one"), getattr(c2, kind)(path, "two")
        p1.join()
        p2.join()
        watcher = getattr(c3, kind)(path)
        c3.sync(path)
        eq(sorted(watcher), ["one", "two"], f"{kind}: members listed")
        eq(len(watcher), 2, f"{kind}: len")
        p1.leave()
        c3.sync(path)
        eq(sorted(watcher), ["two"], f"{kind}: member left")
        p2.leave()
        c3.sync(path)
        eq(list(watcher), [], f"{kind}: empty")


def rec_semaphore(c1, c2, c3, base):
    path = base + "/semaphore"
    s1 = c1.Semaphore(path, "one", max_leases=2)
    s2 = c2.Semaphore(path, "two", max_leases=2)
    s3 = c3.Semaphore(path, "three", max_leases=2)
    check(s1.acquire(timeout=WAIT) and s2.acquire(timeout=WAIT), "two leases granted")
    c3.sync(path)
    eq(sorted(s3.lease_holders()), ["one", "two"], "lease holders")
    eq(s3.acquire(blocking=False), False, "third lease refused")
    waiter = Worker(s3.acquire, True, WAIT)
    still_blocked(waiter, "third waits for a lease")
    s1.release()
    eq(waiter.finish("third gets a lease"), True, "third acquired after a release")
    eq(sorted(s1.lease_holders()), ["three", "two"], "lease holders after hand-over")
    s2.release()
    s3.release()
    eq(s1.lease_holders(), [], "no holders")


def rec_rwlock(c1, c2, c3, base):
    path = base + "/rwlock"
    r1, r2, w = c1.ReadLock(path, "r1"), c2.ReadLock(path, "r2"), c3.WriteLock(path, "w")
    check(r1.acquire(timeout=WAIT) and r2.acquire(timeout=WAIT), "two readers share the lock")
    try:
        w.acquire(timeout=0.5)
        raise CheckFailed("writer acquired while readers hold the lock")
    except ke.LockTimeout:
        check(True, "writer waits for readers")
    r1.release()
    r2.release()
    check(w.acquire(timeout=WAIT), "writer acquires once readers are gone")
    eq(r1.acquire(blocking=False), False, "reader refused while the writer holds it")
    w.release()
    check(r1.acquire(timeout=WAIT), "reader after the writer")
    r1.release()


def run_recipes(label):
    base = f"/zk_recipes_{os.getpid()}_{int(time.time() * 1000)}"
    c1, c2, c3 = connect(), connect(), connect()
    c1.create(base)
    recipes = [
        ("Lock", lambda: rec_lock(c1, c2, base)),
        ("Election", lambda: rec_election(c1, c2, base)),
        ("Barrier", lambda: rec_barrier(c1, c2, base)),
        ("DoubleBarrier", lambda: rec_double_barrier(c1, c2, base)),
        ("Counter", lambda: rec_counter(c1, c2, c3, base)),
        ("Queue", lambda: rec_queue(c1, c2, base)),
        ("LockingQueue", lambda: rec_locking_queue(c1, c2, c3, base)),
        ("Party/ShallowParty", lambda: rec_party(c1, c2, c3, base)),
        ("Semaphore", lambda: rec_semaphore(c1, c2, c3, base)),
        ("ReadLock/WriteLock", lambda: rec_rwlock(c1, c2, c3, base)),
    ]
    for name, fn in recipes:
        run_section(f"{label}{name}", fn)
    c1.retry(c1.delete, base, recursive=True)
    c2.retry(c2.sync, base)  # another session's delete: visible to it after a sync
    check(c2.retry(c2.exists, base) is None, "base path deleted")
    for c in (c1, c2, c3):
        c.stop()
        c.close()



def failover(pid, kill_host):
    hosts = [h.strip() for h in HOSTS.split(",") if h.strip()]
    check(kill_host in hosts, f"--kill-host {kill_host} is one of HOSTS {hosts}")
    others = [h for h in hosts if h != kill_host]
    check(others, "HOSTS names a server besides --kill-host")
    k = connect(hosts=",".join([kill_host] + others), randomize_hosts=False)
    states = []
    k.add_listener(lambda s: states.append(s))
    kh, kp = kill_host.rsplit(":", 1)
    peer = k._connection._socket.getpeername()[:2]
    eq(peer, (kh, int(kp)), "connected to --kill-host first")
    sid = k.client_id[0]
    base = f"/zk_recipes_kill_{os.getpid()}_{int(time.time())}"
    k.create(base)
    eph = k.create(base + "/eph", b"mine", ephemeral=True)
    lock = k.Lock(base + "/lock", "survivor")
    check(lock.acquire(timeout=WAIT), "lock taken before the kill")

    os.kill(pid, signal.SIGKILL)
    t = time.monotonic()
    wait_for(lambda: KazooState.SUSPENDED in states, "client notices the server is gone")
    wait_for(lambda: k.connected and k._connection._socket is not None, "client reconnects")
    took = time.monotonic() - t
    peer2 = k._connection._socket.getpeername()[:2]
    check(peer2 != (kh, int(kp)) and f"{peer2[0]}:{peer2[1]}" in others,
          f"reconnected to another server of HOSTS: {peer2}")
    eq(k.client_id[0], sid, "same session after failover")
    check(KazooState.LOST not in states, f"session never lost: {states}")
    eq(k.exists(eph).ephemeralOwner, sid, "the ephemeral survives, owned by the session")
    fresh = connect(hosts=",".join(others))
    st = fresh.exists(eph)
    check(st is not None and st.ephemeralOwner == sid,
          f"a fresh client sees the ephemeral owned by 0x{sid:x}: {st}")
    eq(fresh.Lock(base + "/lock").contenders(), ["survivor"], "the lock is still held")
    check(lock.is_acquired, "the holder still thinks it holds the lock")
    eq(fresh.Lock(base + "/lock").acquire(blocking=False), False, "others cannot take it")
    lock.release()
    eq(fresh.Lock(base + "/lock").contenders(), [], "released after failover")
    k.delete(base, recursive=True)
    k.stop()
    k.close()
    fresh.stop()
    fresh.close()
    print(f"  failover: reconnected to {peer2[0]}:{peer2[1]} in {took:.2f} s, session 0x{sid:x}")




def main():
    global HOSTS
    ap = argparse.ArgumentParser()
    ap.add_argument("hosts")
    ap.add_argument("--kill-pid", "--after-kill-pid", dest="kill_pid", type=int)
    ap.add_argument("--kill-host")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if (args.kill_pid is None) != (args.kill_host is None):
        ap.error("--kill-pid and --kill-host go together")
    HOSTS, STATE.verbose = args.hosts, args.verbose
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL)
    t0 = time.monotonic()
    label = ""
    if args.kill_pid is not None:
        run_section("failover", lambda: failover(args.kill_pid, args.kill_host))
        label = "after kill: "
    try:
        run_recipes(label)
    except Exception as e:  # noqa: BLE001 - connecting or cleaning up failed
        STATE.failures.append("recipes setup/cleanup")
        print(f"FAIL recipes setup/cleanup: {type(e).__name__}: {e}")
        traceback.print_exc()
    finish("zk_recipes", t0)


if __name__ == "__main__":
    main()
