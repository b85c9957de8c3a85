"""Every operation a kazoo client can do against a ZooKeeper 3.8 server, with assertions.

usage:
  zk_kazoo.py HOSTS [--reap-wait SECONDS] [--verbose]
      HOSTS is a connect string (127.0.0.1:2181,127.0.0.1:2182,...). Everything happens under
      a fresh /zk_kazoo_<pid>_<time>, deleted at the end. Prints one line per section, a
      "FAIL ..." line (with what was being checked) for every failed check, and at the end
      "zk_kazoo: N checks passed" (exit 0) or "zk_kazoo: N checks passed, M FAILED" (exit 1).
      --reap-wait S: also wait up to S seconds for the server to reap an emptied container
      and an expired TTL node (real ZooKeeper checks every znode.container.checkIntervalMs,
      60 s by default, so this is off unless asked for).

Validated against a real ZooKeeper 3.8.0 ensemble (perf/zk-anchor.sh), 1 and 3 servers, and a
single server started with JAVA_TOOL_OPTIONS="-Dzookeeper.extendedTypesEnabled=true
-Dznode.container.checkIntervalMs=1000" for the TTL and reaping parts.

kazoo 2.11.0 has no API for container/TTL creates, addWatch, removeWatches, getEphemerals or
getAllChildrenNumber, so those requests are sent through kazoo's own connection as raw jute
records (opcodes 19, 21, 106, 18, 103, 104) and persistent-watch events are dispatched by a hook
on the connection's watch-event reader. What real ZooKeeper 3.8 does that one might not expect,
and that is asserted here:
  * a sequential suffix is NOT the visible cversion: ZooKeeper stores the number of child
    creates and shows cversion = 2 * creates - numChildren, the suffix being the creates;
  * setACL on a node without ADMIN fails NoAuth even with a wrong version (ACL checked first);
  * the Stat of a container or TTL node shows ephemeralOwner == 0 (the server keeps the
    0x8000.../0xFF.. marker internal: DataNode.getClientEphemeralOwner);
  * createTTL with extended types off -> UnimplementedError; ttl 0 -> BadArgumentsError;
  * a failed multi answers RolledBackError (code 0) for the ops before the failing one, the
    real error for it, and RuntimeInconsistency (-2) for the ops after it;
  * removeWatches for a path with no watch -> NoWatcherError (-121, unknown to kazoo: registered
    here); a persistent-recursive watch never delivers NodeChildrenChanged;
  * an oversized request (> jute.maxbuffer, 1 MiB - 1) makes the server drop the connection:
    kazoo raises ConnectionLoss and reconnects to the same session, re-sending its auth (kazoo
    2.11 sends no SetWatches: its watchers get a NONE event and are forgotten);
  * getACL / getChildren need READ (NoAuthError), exists and delete (parent's DELETE) do not;
  * a path without a leading slash is NOT rejected by kazoo 2.11 client side: the server
    answers NoNodeError (accepted here: NoNodeError or BadArgumentsError, session intact);
  * whoami (opcode 107) is ZooKeeper 3.9: a 3.8 server never answers it, so it is not sent.
"""
import argparse
import logging
import os
import subprocess
import sys
import threading
import time
from collections import namedtuple

from kazoo import exceptions as ke
from kazoo.client import KazooClient
from zk_checks import STATE, WAIT, CheckFailed, check, eq, finish, run_section, wait_for
from kazoo.protocol.serialization import (
    Watch,
    int_struct,
    long_struct,
    read_string,
    stat_struct,
    write_buffer,
    write_string,
)
from kazoo.protocol.states import (
    EVENT_TYPE_MAP,
    Callback,
    EventType,
    KazooState,
    KeeperState,
    WatchedEvent,
    ZnodeStat,
)
from kazoo.security import (
    ACL,
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    Id,
    Permissions,
    make_acl,
    make_digest_acl,
)

HOSTS = ""




def raises(excs, fn, *args, what="", **kwargs):
    """fn(*args) must raise one of excs; returns the exception."""
    try:
        res = fn(*args, **kwargs)
    except excs as e:
        check(True, what)
        return e
    except Exception as e:  # noqa: BLE001 - reported as a failure
        raise CheckFailed(f"{what}: raised {type(e).__name__}({e}), want {excs}") from e
    raise CheckFailed(f"{what}: returned {res!r}, want {excs}")


def wait_event(ev, what, timeout=WAIT):
    check(ev.wait(timeout), f"{what} (waited {timeout:.0f} s)")




# ---------------------------------------------------------------------------------------------
# Raw jute records for requests kazoo 2.11 has no API for, sent through kazoo's connection.

def _acl_bytes(acl):
    b = bytearray(int_struct.pack(len(acl)))
    for a in acl:
        b += int_struct.pack(a.perms) + write_string(a.id.scheme) + write_string(a.id.id)
    return b


class CreateExt(namedtuple("CreateExt", "type path data acl flags ttl")):
    """createContainer (19, flags 4) or createTTL (21, flags 5/6 + ttl ms); Create2Response."""

    def serialize(self):
        b = bytearray(write_string(self.path) + write_buffer(self.data) + _acl_bytes(self.acl))
        b += int_struct.pack(self.flags)
        if self.ttl is not None:
            b += long_struct.pack(self.ttl)
        return b

    @classmethod
    def deserialize(cls, buf, off):
        path, off = read_string(buf, off)
        return path, ZnodeStat._make(stat_struct.unpack_from(buf, off))


class AddWatch(namedtuple("AddWatch", "path mode")):
    type = 106
    PERSISTENT, PERSISTENT_RECURSIVE = 0, 1

    def serialize(self):
        return write_string(self.path) + int_struct.pack(self.mode)

    @classmethod
    def deserialize(cls, buf, off):
        return True


class RemoveWatches(namedtuple("RemoveWatches", "path wtype")):
    type = 18
    CHILDREN, DATA, ANY = 1, 2, 3

    def serialize(self):
        return write_string(self.path) + int_struct.pack(self.wtype)

    @classmethod
    def deserialize(cls, buf, off):
        return True


class GetEphemerals(namedtuple("GetEphemerals", "prefix")):
    type = 103

    def serialize(self):
        return write_string(self.prefix)

    @classmethod
    def deserialize(cls, buf, off):
        n = int_struct.unpack_from(buf, off)[0]
        off += 4
        out = []
        for _ in range(max(n, 0)):
            s, off = read_string(buf, off)
            out.append(s)
        return out


class GetAllChildrenNumber(namedtuple("GetAllChildrenNumber", "path")):
    type = 104

    def serialize(self):
        return write_string(self.path)

    @classmethod
    def deserialize(cls, buf, off):
        return int_struct.unpack_from(buf, off)[0]


if -121 not in ke.EXCEPTIONS:  # kazoo 2.11 does not know NoWatcher; unknown codes kill its reader

    @ke._zookeeper_exception(-121)
    class NoWatcherError(ke.ZookeeperError):
        pass

NoWatcherError = ke.EXCEPTIONS[-121]


def raw(client, req, timeout=WAIT):
    res = client.handler.async_result()
    client._call(req, res)
    return res.get(timeout=timeout)


# ---------------------------------------------------------------------------------------------
# A hook on the connection thread: logs every watch event and reply in wire order, and
# dispatches persistent-watch events (kazoo 2.11 drops events nobody registered for).

def hook(client):
    conn = client._connection
    client.wire_log = []  # ("event", type, path) / ("reply", request class name, path)
    client.persistent = []  # (path, mode, callback)
    read_event, read_response = conn._read_watch_event, conn._read_response

    def on_event(buf, off):
        w, _ = Watch.deserialize(buf, off)
        client.wire_log.append(("event", EVENT_TYPE_MAP.get(w.type, w.type), w.path))
        for path, mode, cb in list(client.persistent):
            hit = w.path == path
            if mode == AddWatch.PERSISTENT_RECURSIVE:
                under = w.path.startswith(path.rstrip("/") + "/")
                hit = (hit or under) and w.type != 4  # NodeChildrenChanged not for recursive
            if hit and w.type in EVENT_TYPE_MAP:
                ev = WatchedEvent(EVENT_TYPE_MAP[w.type], client._state, w.path)
                client.handler.dispatch_callback(Callback("watch", cb, (ev,)))
        return read_event(buf, off)

    def on_response(header, buf, off):
        if client._pending:
            req = client._pending[0][0]
            client.wire_log.append(("reply", type(req).__name__, getattr(req, "path", None)))
        return read_response(header, buf, off)

    conn._read_watch_event, conn._read_response = on_event, on_response
    return client


def flush_callbacks(client):
    """Waits until every watch callback kazoo has dispatched so far has run."""
    done = threading.Event()
    client.handler.dispatch_callback(Callback("watch", done.set, ()))
    wait_event(done, "kazoo callback queue drained")


def settle(client, path):
    """sync + read on `client`: every event for changes made before now has arrived and run."""
    client.sync(path)
    client.exists(path)
    flush_callbacks(client)


def connect(timeout=10, **kw):
    c = KazooClient(hosts=HOSTS, timeout=timeout, **kw)
    c.start(timeout=15)
    STATE.clients.append(c)
    return hook(c)


class Recorder:
    """A watch callback that records (type, path) and sets an Event per call."""

    def __init__(self):
        self.events = []
        self.fired = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, ev):
        with self.lock:
            self.events.append((ev.type, ev.path))
        self.fired.set()


# ---------------------------------------------------------------------------------------------

def sec_create_and_stat(c, base):
    p = base + "/stat"
    path, st = c.create(p, b"hello", include_data=True)
    eq(path, p, "create2 (include_data) returns the path")
    check(isinstance(st, ZnodeStat), "create2 returns a ZnodeStat")
    eq(st.czxid, c.last_zxid, "create: czxid is the reply's zxid")
    check(st.czxid == st.mzxid == st.pzxid, f"create: czxid == mzxid == pzxid: {st}")
    eq((st.version, st.cversion, st.aversion), (0, 0, 0), "create: versions")
    eq((st.ephemeralOwner, st.dataLength, st.numChildren), (0, 5, 0), "create: owner/len/kids")
    eq(st.ctime, st.mtime, "create: ctime == mtime")
    check(abs(st.ctime / 1000.0 - time.time()) < 300, f"create: ctime is now-ish ({st.ctime})")
    eq(c.exists(p), st, "exists returns the create2 stat")
    eq(c.get(p), (b"hello", st), "get returns data and stat")

    st2 = c.set(p, b"world!", version=0)
    eq(st2.version, 1, "set: version 1")
    eq(st2.mzxid, c.last_zxid, "set: mzxid is the reply's zxid")
    check(st2.mzxid > st.czxid, "set: mzxid > czxid")
    eq((st2.czxid, st2.pzxid, st2.ctime), (st.czxid, st.pzxid, st.ctime), "set: czxid/pzxid/ctime")
    check(st2.mtime >= st.mtime, "set: mtime does not go back")
    eq((st2.dataLength, st2.cversion, st2.aversion), (6, 0, 0), "set: dataLength/cversion/aversion")
    raises(ke.BadVersionError, c.set, p, b"x", version=0, what="set with a stale version")
    eq(c.get(p)[0], b"world!", "failed set changed nothing")
    st3 = c.set(p, b"again", version=-1)
    eq(st3.version, 2, "set version -1 (any)")

    _, kid = c.create(p + "/c1", b"", include_data=True)
    pst = c.exists(p)
    eq((pst.cversion, pst.numChildren), (1, 1), "child create: cversion/numChildren")
    eq(pst.pzxid, kid.czxid, "child create: parent pzxid == child czxid")
    eq((pst.mzxid, pst.version), (st3.mzxid, 2), "child create: parent mzxid/version unchanged")
    c.delete(p + "/c1")
    zdel = c.last_zxid
    pst = c.exists(p)
    eq((pst.cversion, pst.numChildren), (2, 0), "child delete: cversion/numChildren")
    eq(pst.pzxid, zdel, "child delete: parent pzxid == the delete's zxid")
    eq(pst.mzxid, st3.mzxid, "child delete: parent mzxid unchanged")

    raises(ke.NodeExistsError, c.create, p, what="create an existing node")
    raises(ke.NoNodeError, c.create, base + "/missing/x", what="create under a missing parent")
    deep = base + "/mk/a/b"
    eq(c.create(deep, b"d", makepath=True), deep, "create makepath")
    check(c.exists(base + "/mk/a") is not None, "makepath created the parents")
    c.ensure_path(base + "/mk/e/f")
    check(c.exists(base + "/mk/e/f") is not None, "ensure_path")

    for k in ("k3", "k1", "k2"):
        c.create(f"{p}/{k}", k.encode())
    kids, kst = c.get_children(p, include_data=True)
    eq(sorted(kids), ["k1", "k2", "k3"], "get_children")
    eq(kst, c.exists(p), "get_children(include_data) stat == exists stat")
    eq(sorted(c.get_children(p)), ["k1", "k2", "k3"], "get_children without stat")

    raises(ke.NotEmptyError, c.delete, p, what="delete a node with children")
    kst = c.exists(p + "/k1")
    raises(ke.BadVersionError, c.delete, p + "/k1", version=kst.version + 5, what="delete bad ver")
    eq(c.delete(p + "/k1", version=kst.version), True, "delete with the right version")
    raises(ke.NoNodeError, c.delete, p + "/k1", what="delete a missing node")
    raises(ke.NoNodeError, c.get, p + "/k1", what="get a missing node")
    raises(ke.NoNodeError, c.set, p + "/k1", b"", what="set a missing node")
    raises(ke.NoNodeError, c.get_children, p + "/k1", what="get_children of a missing node")
    eq(c.exists(p + "/k1"), None, "exists of a missing node")
    eq(c.sync(p), p, "sync returns the path")
    c.delete(base + "/mk", recursive=True)
    eq(c.exists(base + "/mk"), None, "delete(recursive=True)")
    e = raises(ke.ZookeeperError, c.get, "no/leading/slash", what="path without leading slash")
    check(isinstance(e, (ke.NoNodeError, ke.BadArgumentsError)),
          f"relative path answered NoNode/BadArguments, not {type(e).__name__}")
    check(c.connected and c.exists(p) is not None, "session usable after a relative path")


def sec_sequential_ephemeral(c, base):
    # The Stat's cversion counts creates and deletes, but ZooKeeper stores only the number of
    # creates and shows cversion = 2 * creates - numChildren (DataNode.copyStat); the sequence
    # suffix is that stored count, i.e. (cversion + numChildren) / 2, not the visible cversion.
    q = base + "/seq"
    c.create(q)
    c.create(q + "/x")
    c.delete(q + "/x")
    c.create(q + "/y")
    st = c.exists(q)
    eq((st.cversion, st.numChildren), (3, 1), "parent cversion after 2 creates and a delete")
    n = (st.cversion + st.numChildren) // 2
    s1 = c.create(q + "/s-", b"", sequence=True)
    eq(s1, f"{q}/s-{n:010d}", "sequential suffix = child creates so far, 10 digits zero-padded")
    s2 = c.create(q + "/other-", sequence=True)
    eq(s2, f"{q}/other-{n + 1:010d}", "sequence counter is per parent, not per prefix")
    c.delete(s2)
    s3, st3 = c.create(q + "/", sequence=True, include_data=True)
    eq(s3, f"{q}/{n + 2:010d}", "sequential with an empty name; a delete does not advance it")
    e1, est = c.create(q + "/e-", b"eph", ephemeral=True, sequence=True, include_data=True)
    eq(e1, f"{q}/e-{n + 3:010d}", "ephemeral+sequential suffix")
    eq(est.ephemeralOwner, c.client_id[0], "ephemeral+sequential: ephemeralOwner = session id")
    eph, est2 = c.create(q + "/eph", b"", ephemeral=True, include_data=True)
    eq(est2.ephemeralOwner, c.client_id[0], "ephemeral: ephemeralOwner = session id")
    eq(st3.ephemeralOwner, 0, "persistent sequential: ephemeralOwner 0")
    raises(ke.NoChildrenForEphemeralsError, c.create, eph + "/kid", what="child of an ephemeral")
    st = c.exists(q)
    eq((st.cversion, st.numChildren), (3 + 6, 1 + 4), "cversion counts every create and delete")


def sec_container_ttl(c, base, reap_wait):
    ct = base + "/container"
    path, st = raw(c, CreateExt(19, ct, b"box", OPEN_ACL_UNSAFE, 4, None))
    eq(path, ct, "createContainer path")
    eq(st.ephemeralOwner, 0, "container: client-visible ephemeralOwner is 0")
    eq((st.version, st.dataLength, st.numChildren), (0, 3, 0), "container stat")
    raises(ke.NodeExistsError, raw, c, CreateExt(19, ct, b"", OPEN_ACL_UNSAFE, 4, None),
           what="createContainer on an existing path")
    c.create(ct + "/kid")
    eq(c.exists(ct).numChildren, 1, "a container can have children")

    tp = base + "/ttl"
    try:
        path, tst = raw(c, CreateExt(21, tp, b"t", OPEN_ACL_UNSAFE, 5, 5000))
    except ke.UnimplementedError:
        print("  ttl: skipped (server has extended types off)")
        check(True, "createTTL answered UnimplementedError (extended types off)")
        ttl_ok = False
    else:
        ttl_ok = True
        eq(path, tp, "createTTL path")
        eq(tst.ephemeralOwner, 0, "TTL node: client-visible ephemeralOwner is 0")
        eq(c.exists(tp), tst, "TTL node exists with the same stat")
        sp, _ = raw(c, CreateExt(21, base + "/ttls-", b"", OPEN_ACL_UNSAFE, 6, 5000))
        check(sp.startswith(base + "/ttls-") and len(sp) == len(base) + 16, f"TTL sequential {sp}")
        raises(ke.BadArgumentsError, raw, c, CreateExt(21, tp + "0", b"", OPEN_ACL_UNSAFE, 5, 0),
               what="createTTL with ttl 0")
        raises(ke.BadArgumentsError, raw, c, CreateExt(21, tp + "e", b"", OPEN_ACL_UNSAFE, 1, 5000),
               what="createTTL with the ephemeral flag")

    if reap_wait > 0:
        c.delete(ct + "/kid")
        wait_for(lambda: c.exists(ct) is None, "emptied container is reaped", timeout=reap_wait)
        if ttl_ok:
            short = base + "/ttlshort"
            raw(c, CreateExt(21, short, b"", OPEN_ACL_UNSAFE, 5, 1000))
            wait_for(lambda: c.exists(short) is None, "expired TTL node is reaped",
                     timeout=reap_wait)


def sec_acl(c, b, base):
    p = base + "/acl"
    c.create(p, b"open")
    acls, st = c.get_acls(p)
    eq(list(acls), list(OPEN_ACL_UNSAFE), "default ACL is world:anyone ALL")
    eq(st.aversion, 0, "aversion 0 at create")
    rwa = [make_acl("world", "anyone", read=True, write=True, admin=True)]
    st1 = c.set_acls(p, rwa, version=0)
    eq(st1.aversion, 1, "set_acls increments aversion")
    eq(st1.version, 0, "set_acls leaves the data version")
    raises(ke.BadVersionError, c.set_acls, p, OPEN_ACL_UNSAFE, version=0, what="set_acls stale")
    eq(list(c.get_acls(p)[0]), rwa, "get_acls after set_acls")
    c.set_acls(p, READ_ACL_UNSAFE)
    raises(ke.NoAuthError, c.set_acls, p, OPEN_ACL_UNSAFE, version=99,
           what="set_acls without ADMIN: NoAuth is checked before the version")
    c.delete(p)
    c.create(p)
    eq(c.set_acls(p, OPEN_ACL_UNSAFE, version=-1).aversion, 1, "set_acls version -1")
    # The same entry twice is kept once, in the order first given (ZooKeeper's removeDuplicates).
    ro = make_acl("world", "anyone", read=True)
    dup = base + "/dupacl"
    c.create(dup, b"", acl=[rwa[0], ro, rwa[0], ro])
    eq(list(c.get_acls(dup)[0]), [rwa[0], ro], "duplicate ACL entries at create kept once")
    c.set_acls(dup, [ro, ro, rwa[0]])
    eq(list(c.get_acls(dup)[0]), [ro, rwa[0]], "duplicate ACL entries at set_acls kept once")
    c.delete(dup)

    # digest
    c.add_auth("digest", "user:pw")
    d = base + "/digest"
    dacl = make_digest_acl("user", "pw", all=True)
    c.create(d, b"secret", acl=[dacl])
    eq(c.get(d)[0], b"secret", "authenticated owner reads the digest node")
    eq(list(c.get_acls(d)[0]), [dacl], "digest ACL stored as given")
    b.sync(d)  # another session's write: visible to it after a sync (ZooKeeper's promise)
    raises(ke.NoAuthError, b.get, d, what="unauthenticated get of a digest node")
    raises(ke.NoAuthError, b.set, d, b"x", what="unauthenticated set of a digest node")
    raises(ke.NoAuthError, b.get_children, d, what="unauthenticated get_children")
    raises(ke.NoAuthError, b.get_acls, d, what="unauthenticated get_acls (needs READ or ADMIN)")
    check(b.exists(d) is not None, "exists needs no permission")
    w = connect()
    w.add_auth("digest", "user:wrong")
    w.sync(d)
    raises(ke.NoAuthError, w.get, d, what="get with the wrong digest password")
    w.add_auth("digest", "user:pw")
    eq(w.get(d)[0], b"secret", "second identity added: now readable")
    eq(w.set(d, b"s2").version, 1, "authenticated set")

    # auth scheme: the creator's authenticated ids
    au = base + "/authscheme"
    c.create(au, acl=[ACL(Permissions.ALL, Id("auth", ""))])
    eq(list(c.get_acls(au)[0]), [dacl], "auth scheme expands to the session's digest id")
    raises(ke.InvalidACLError, b.create, base + "/authx", acl=[ACL(Permissions.ALL, Id("auth", ""))],
           what="auth scheme without authentication")
    raises(ke.InvalidACLError, c.create, base + "/bad", acl=[ACL(31, Id("digest", "nocolon"))],
           what="malformed digest id")
    raises(ke.InvalidACLError, c.create, base + "/bad", acl=[ACL(31, Id("bogus", "x"))],
           what="unknown ACL scheme")

    # world read-only
    r = base + "/readonly"
    c.create(r, b"ro", acl=READ_ACL_UNSAFE)
    b.sync(r)
    eq(b.get(r)[0], b"ro", "world read on a read-only node")
    raises(ke.NoAuthError, b.set, r, b"x", what="set on a world:anyone READ node")
    raises(ke.NoAuthError, c.set, r, b"x", what="set by its creator on a READ-only node")
    raises(ke.NoAuthError, c.create, r + "/k", what="create under a READ-only node")
    raises(ke.NoAuthError, c.set_acls, r, OPEN_ACL_UNSAFE, what="set_acls without ADMIN")

    # ip
    ip = base + "/ip"
    c.create(ip, b"ip", acl=[make_acl("ip", "127.0.0.1", all=True)])
    eq(b.set(ip, b"ip2").version, 1, "ip:127.0.0.1 ACL allows a loopback client")
    ipn = base + "/ipother"
    c.create(ipn, b"", acl=[make_acl("ip", "10.254.254.254", all=True)])
    b.sync(ipn)  # another session's create: b's server may not have applied it yet
    raises(ke.NoAuthError, b.get, ipn, what="ip ACL for another address refuses")
    eq(b.delete(ipn), True, "delete needs only the parent's DELETE permission")
    eq(b.delete(r), True, "delete of a READ-only node (parent is open)")
    print("  whoami: skipped (opcode 107 is ZooKeeper 3.9; kazoo 2.11 has no whoami)")


def sec_multi(c, base):
    m = base + "/multi"
    c.create(m)
    c.create(m + "/a", b"0")
    c.create(m + "/gone")
    t = c.transaction()
    t.create(m + "/new", b"n")
    t.set_data(m + "/a", b"1", version=0)
    t.check(m + "/a", 1)
    t.delete(m + "/gone")
    res = t.commit()
    eq(len(res), 4, f"multi: 4 results {res}")
    eq(res[0], m + "/new", "multi create result is the path")
    check(isinstance(res[1], ZnodeStat) and res[1].version == 1, f"multi set_data -> stat {res[1]}")
    eq(res[2:], [True, True], "multi check and delete results")
    eq(c.exists(m + "/new").czxid, c.exists(m + "/a").mzxid, "all ops of a multi share one zxid")
    eq(c.exists(m + "/gone"), None, "multi delete applied")

    before = c.exists(m)
    t = c.transaction()
    t.create(m + "/x", b"")
    t.check(m + "/a", 99)
    t.create(m + "/y", b"")
    res = t.commit()
    kinds = [type(r) for r in res]
    eq(kinds, [ke.RolledBackError, ke.BadVersionError, ke.RuntimeInconsistency],
       "failed multi: RolledBack before, real error, RuntimeInconsistency after")
    eq((c.exists(m + "/x"), c.exists(m + "/y")), (None, None), "failed multi applied nothing")
    after = c.exists(m)
    eq((after.cversion, after.pzxid), (before.cversion, before.pzxid), "failed multi: parent same")

    t = c.transaction()
    t.set_data(m + "/nope", b"", version=-1)
    t.create(m + "/z")
    eq([type(r) for r in t.commit()], [ke.NoNodeError, ke.RuntimeInconsistency],
       "multi failing on its first op")
    eq(c.exists(m + "/z"), None, "nothing applied")

    t = c.transaction()
    t.check(m + "/a", 1)
    eq(t.commit(), [True], "a lone check in a transaction")
    t = c.transaction()
    t.check(m + "/a", 0)
    eq([type(r) for r in t.commit()], [ke.BadVersionError], "a lone failing check")
    with c.transaction() as t:
        t.create(m + "/ctx", b"")
    check(c.exists(m + "/ctx") is not None, "transaction as a context manager")


def sec_watches(a, b, base):
    w = base + "/watch"
    a.create(w, b"0")
    b.sync(w)

    # data watch: CHANGED once
    rec = Recorder()
    a.get(w, watch=rec)
    b.set(w, b"1")
    wait_event(rec.fired, "data watch fires on set")
    b.set(w, b"2")
    settle(a, w)
    eq(rec.events, [(EventType.CHANGED, w)], "data watch: one CHANGED, not re-fired (one-shot)")

    # the event reaches the client before the reply to a read that sees the change
    rec = Recorder()
    _, st = a.get(w, watch=rec)
    mark = len(a.wire_log)
    b.set(w, b"3")
    deadline = time.monotonic() + WAIT
    while True:
        data, st2 = a.get(w)
        if st2.version > st.version:
            break
        check(time.monotonic() < deadline, "the read eventually sees the change")
    log = a.wire_log[mark:]
    replies = [i for i, e in enumerate(log) if e == ("reply", "GetData", w)]
    events = [i for i, e in enumerate(log) if e == ("event", EventType.CHANGED, w)]
    check(events and events[0] < replies[-1],
          f"CHANGED event arrived before the reply of the read that saw version {st2.version}: {log}")
    already = rec.fired.is_set()
    wait_event(rec.fired, "callback for the change runs")
    print(f"  watch-vs-read: event before reply on the wire; callback had run at read return: {already}")

    # exists watch: CREATED
    n = base + "/born"
    rec = Recorder()
    eq(a.exists(n, watch=rec), None, "exists on a missing node sets a watch")
    b.create(n, b"")
    wait_event(rec.fired, "exists watch fires on create")
    b.delete(n)
    settle(a, base)
    eq(rec.events, [(EventType.CREATED, n)], "exists watch: one CREATED only")

    # exists watch on an existing node: CHANGED; then DELETED for a fresh one
    rec = Recorder()
    a.exists(w, watch=rec)
    b.set(w, b"4")
    wait_event(rec.fired, "exists watch fires on set")
    eq(rec.events, [(EventType.CHANGED, w)], "exists watch on existing node: CHANGED")

    # child watch: CHILD on create, one-shot; again on child delete
    rec = Recorder()
    a.get_children(w, watch=rec)
    b.create(w + "/k1")
    wait_event(rec.fired, "child watch fires on child create")
    b.create(w + "/k2")
    b.set(w, b"5")
    settle(a, w)
    eq(rec.events, [(EventType.CHILD, w)], "child watch: one CHILD; set on parent not a child event")
    rec = Recorder()
    a.get_children(w, watch=rec)
    b.delete(w + "/k2")
    wait_event(rec.fired, "child watch fires on child delete")
    eq(rec.events, [(EventType.CHILD, w)], "child delete -> CHILD")

    # delete: data watch and child watch both see DELETED
    d = base + "/doomed"
    b.create(d, b"")
    a.sync(d)  # b's create: a's server may not have applied it yet
    recd, recc = Recorder(), Recorder()
    a.get(d, watch=recd)
    a.get_children(d, watch=recc)
    b.delete(d)
    wait_event(recd.fired, "data watch fires on delete")
    wait_event(recc.fired, "child watch fires on delete")
    settle(a, base)
    eq(recd.events, [(EventType.DELETED, d)], "data watch: DELETED")
    eq(recc.events, [(EventType.DELETED, d)], "child watch on deleted node: DELETED")
    eq(recd.events[0], (EventType.DELETED, d), "event path is the node")

    # standard watch removed with removeWatches
    rec = Recorder()
    a.get(w, watch=rec)
    eq(raw(a, RemoveWatches(w, RemoveWatches.DATA)), True, "removeWatches DATA")
    raises(NoWatcherError, raw, a, RemoveWatches(w, RemoveWatches.DATA),
           what="removeWatches when none is left")
    raises(NoWatcherError, raw, a, RemoveWatches(w, RemoveWatches.CHILDREN),
           what="removeWatches CHILDREN when no child watch is set")
    b.set(w, b"6")
    settle(a, w)
    eq(rec.events, [], "a removed data watch does not fire")
    a._data_watchers.pop(w, None)  # kazoo's client-side copy of the removed watch

    # persistent watch on one node
    pw = base + "/pers"
    a.create(pw, b"")
    b.sync(pw)
    rec = Recorder()
    a.persistent.append((pw, AddWatch.PERSISTENT, rec))
    eq(raw(a, AddWatch(pw, AddWatch.PERSISTENT)), True, "addWatch PERSISTENT")
    b.set(pw, b"1")
    b.create(pw + "/c")
    b.set(pw + "/c", b"x")
    b.set(pw, b"2")
    b.delete(pw + "/c")
    settle(a, pw)
    eq(rec.events, [(EventType.CHANGED, pw), (EventType.CHILD, pw), (EventType.CHANGED, pw),
                    (EventType.CHILD, pw)], "persistent watch: every change, not one-shot")
    eq(raw(a, RemoveWatches(pw, RemoveWatches.ANY)), True, "removeWatches ANY (persistent)")
    a.persistent.clear()
    b.set(pw, b"3")
    settle(a, pw)
    eq(len(rec.events), 4, "removed persistent watch is silent")

    # persistent recursive
    rw = base + "/rec"
    a.create(rw, b"")
    b.sync(rw)
    rec = Recorder()
    a.persistent.append((rw, AddWatch.PERSISTENT_RECURSIVE, rec))
    eq(raw(a, AddWatch(rw, AddWatch.PERSISTENT_RECURSIVE)), True, "addWatch PERSISTENT_RECURSIVE")
    b.create(rw + "/a", b"")
    b.set(rw + "/a", b"1")
    b.create(rw + "/a/b", b"")
    b.delete(rw + "/a/b")
    b.set(rw, b"r")
    b.delete(rw + "/a")
    b.create(base + "/recsibling", b"")  # outside: no event
    settle(a, rw)
    eq(rec.events, [(EventType.CREATED, rw + "/a"), (EventType.CHANGED, rw + "/a"),
                    (EventType.CREATED, rw + "/a/b"), (EventType.DELETED, rw + "/a/b"),
                    (EventType.CHANGED, rw), (EventType.DELETED, rw + "/a")],
       "recursive watch: node and descendants, no CHILD events")
    eq(raw(a, RemoveWatches(rw, RemoveWatches.ANY)), True, "remove the recursive watch")
    a.persistent.clear()
    raises(NoWatcherError, raw, a, RemoveWatches(rw, RemoveWatches.ANY),
           what="remove a recursive watch twice")
    b.create(rw + "/z", b"")
    settle(a, rw)
    eq(len(rec.events), 6, "removed recursive watch is silent")
    check(a.connected, "connection healthy after the watch section")


def sec_ephemeral_sessions(b, base):
    a = connect()
    e = base + "/eph_a"
    a.create(e, b"", ephemeral=True)
    b.sync(e)
    st = b.exists(e)
    check(st is not None and st.ephemeralOwner == a.client_id[0], "B sees A's ephemeral, owned by A")
    gone = Recorder()
    b.exists(e, watch=gone)
    eph = raw(b, GetEphemerals(base))
    eq(eph, [], "getEphemerals: B owns none")
    eq(raw(a, GetEphemerals(base)), [e], "getEphemerals(prefix) lists the session's ephemerals")
    eq(raw(a, GetEphemerals("/")), [e], "getEphemerals('/') lists them too")
    a.stop()
    a.close()
    wait_event(gone.fired, "ephemeral deleted after its owner's closeSession")
    eq(gone.events, [(EventType.DELETED, e)], "B sees DELETED")
    eq(b.exists(e), None, "ephemeral gone")


def sec_reconfig(c):
    # Dynamic reconfiguration is off, as in ZooKeeper 3.8 by default (reconfigEnabled=false).
    raises(
        ke.ReconfigDisabledError,
        c.reconfig,
        joining="server.9=127.0.0.1:2888:3888:participant;127.0.0.1:2189",
        leaving=None,
        new_members=None,
        what="reconfig answered ZRECONFIGDISABLED",
    )


def sec_children_number(c, base):
    n = base + "/count"
    c.create(n + "/a/b/c", makepath=True)
    c.create(n + "/d")
    eq(raw(c, GetAllChildrenNumber(n)), 4, "getAllChildrenNumber counts all descendants")
    eq(raw(c, GetAllChildrenNumber(n + "/d")), 0, "getAllChildrenNumber of a leaf")
    raises(ke.NoNodeError, raw, c, GetAllChildrenNumber(n + "/nope"), what="count of a missing node")


def sec_session_expiry(b, base):
    a = connect(timeout=4)
    states, lost = [], threading.Event()

    def listener(state):
        states.append((state, a.client_state))
        if state == KazooState.LOST:
            lost.set()

    a.add_listener(listener)
    old = a.client_id
    e = base + "/eph_expire"
    a.create(e, b"", ephemeral=True)
    gone = Recorder()
    b.sync(e)
    check(b.exists(e, watch=gone) is not None, "B sees the ephemeral")
    # Close A's session from a second connection with the same id and password.
    thief = KazooClient(hosts=HOSTS, timeout=10, client_id=old)
    thief.start(timeout=15)
    eq(thief.client_id[0], old[0], "second connection attached to the same session")
    thief.stop()
    thief.close()
    wait_event(gone.fired, "ephemeral removed when the session is closed elsewhere")
    wait_event(lost, "A's listener sees LOST")
    check((KazooState.LOST, KeeperState.EXPIRED_SESSION) in states,
          f"A saw EXPIRED_SESSION with LOST: {states}")
    wait_for(lambda: a.connected, "A reconnects with a new session")
    check(a.client_id[0] != old[0], "new session id after expiry")
    eq(a.exists(e), None, "the expired session's ephemeral is gone for A too")


RESUME_CHILD = r"""
import os, sys
from kazoo.client import KazooClient
c = KazooClient(hosts=sys.argv[1], timeout=10)
c.start(timeout=15)
c.create(sys.argv[2], b"child", ephemeral=True)
sid, pw = c.client_id
print(sid, pw.hex(), flush=True)
os._exit(0)  # no closeSession: the session lives on until its timeout
"""


def sec_session_resume(b, base):
    e = base + "/eph_resume"
    out = subprocess.run([sys.executable, "-c", RESUME_CHILD, HOSTS, e], capture_output=True,
                         text=True, timeout=WAIT)
    check(out.returncode == 0, f"resume helper ran: {out.stderr[-500:]}")
    sid, pw = out.stdout.split()
    sid, pw = int(sid), bytes.fromhex(pw)
    r = connect(client_id=(sid, pw))
    eq(r.client_id[0], sid, "client_id= resumes the same session")
    r.sync(e)  # (written through another connection, maybe another node)
    eq(r.exists(e).ephemeralOwner, sid, "the resumed session sees its ephemeral")
    b.sync(e)
    eq(b.exists(e).ephemeralOwner, sid, "another client sees the ephemeral owned by that session")
    r.create(e + "2", b"", ephemeral=True)
    eq(sorted(raw(r, GetEphemerals(base))), [e, e + "2"], "resumed session owns both ephemerals")
    gone = Recorder()
    b.exists(e, watch=gone)
    r.stop()
    r.close()
    wait_event(gone.fired, "closing the resumed session removes its ephemerals")
    eq((b.exists(e), b.exists(e + "2")), (None, None), "both ephemerals gone")


def sec_large(a, b, base):
    # a is authenticated as user:pw (sec_acl) and owns the digest node
    big = base + "/big"
    a.create(big)
    val = bytes(range(256)) * 4096
    val = val[: 1024 * 1024 - 100]
    eq(a.set(big, val).dataLength, len(val), "set 1 MiB - 100 bytes")
    eq(a.get(big)[0], val, "read back 1 MiB - 100 bytes")
    ver = a.exists(big).version
    rec = Recorder()
    a.get(base + "/watch", watch=rec)
    sid = a.client_id[0]
    raises((ke.ConnectionLoss, ke.ZookeeperError), a.set, big, b"x" * (1024 * 1024 + 100),
           what="set 1 MiB + 100 bytes fails")
    data, st = a.retry(a.get, big)
    eq((len(data), st.version), (len(val), ver), "client recovers; oversize set not applied")
    eq(a.client_id[0], sid, "same session after the dropped connection")
    eq(a.retry(a.get, base + "/digest")[0], b"s2", "digest auth re-sent after reconnect")
    # kazoo 2.11 has no SetWatches: on a lost connection it fires NONE to every watcher and
    # forgets them. A watch set after the reconnect works.
    wait_event(rec.fired, "kazoo tells its watchers about the lost connection")
    eq(rec.events, [(EventType.NONE, None)], "kazoo: NONE event on connection loss")
    rec = Recorder()
    a.get(base + "/watch", watch=rec)
    b.set(base + "/watch", b"after-reconnect")
    wait_event(rec.fired, "a watch set after the reconnect fires")
    eq(rec.events, [(EventType.CHANGED, base + "/watch")], "watch after reconnect: CHANGED")


def main():
    global HOSTS
    ap = argparse.ArgumentParser()
    ap.add_argument("hosts")
    ap.add_argument("--reap-wait", type=float, default=0.0)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    HOSTS = args.hosts
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL)
    t0 = time.monotonic()

    base = f"/zk_kazoo_{os.getpid()}_{int(time.time())}"
    try:
        a = connect()
        b = connect()
        a.create(base)
    except Exception as e:  # noqa: BLE001
        print(f"FAIL connect to {HOSTS} and create {base}: {type(e).__name__}: {e}")
        print("zk_kazoo: 0 checks passed, 1 FAILED (connect)")
        sys.exit(1)
    sections = [
        ("create/exists/get/set/delete + stat", lambda: sec_create_and_stat(a, base)),
        ("sequential/ephemeral", lambda: sec_sequential_ephemeral(a, base)),
        ("container/TTL", lambda: sec_container_ttl(a, base, args.reap_wait)),
        ("ACLs", lambda: sec_acl(a, b, base)),
        ("multi", lambda: sec_multi(a, base)),
        ("watches", lambda: sec_watches(a, b, base)),
        ("getAllChildrenNumber", lambda: sec_children_number(a, base)),
        ("ephemerals across sessions", lambda: sec_ephemeral_sessions(b, base)),
        ("session expiry", lambda: sec_session_expiry(b, base)),
        ("session resume", lambda: sec_session_resume(b, base)),
        ("large data", lambda: sec_large(a, b, base)),
        ("reconfig", lambda: sec_reconfig(a)),
    ]
    STATE.verbose = args.verbose
    for name, fn in sections:
        run_section(name, fn)
    try:
        a.retry(a.delete, base, recursive=True)
        # Another session sees it only after a sync (ZooKeeper promises no more across sessions).
        b.retry(b.sync, base)
        check(b.retry(b.exists, base) is None, "base path deleted")
    except Exception as e:  # noqa: BLE001
        STATE.failures.append("cleanup")
        print(f"FAIL cleanup of {base}: {type(e).__name__}: {e}")
    finish("zk_kazoo", t0)


if __name__ == "__main__":
    main()
