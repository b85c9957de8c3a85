"""Every four-letter word ZooKeeper 3.8 has, asked through kazoo's `command` (and by
`server_version`), in ZooKeeper's format: a session with an ephemeral znode and a data watch
shows in wchc, wchp and dump; srst and crst reset the counters stat and cons show; isro is rw;
hash is the tree's digest at its zxid; dirs the data and log sizes. Prints "ok".

usage: zk_four_letter.py HOST:PORT
"""
import re
import sys

from kazoo.client import KazooClient

hosts = sys.argv[1]
c = KazooClient(hosts=hosts)
c.start(timeout=30)
c.ensure_path("/fl")
c.create("/fl/eph", b"x", ephemeral=True)
c.get("/fl/eph", watch=lambda event: None)
sid = f"0x{c.client_id[0]:x}"


def word(w):
    return c.command(w.encode())


assert c.server_version()[:2] == (3, 8), c.server_version()
assert word("isro") == "rw", word("isro")
wchc = word("wchc")
assert f"{sid}\n\t/fl/eph\n" in wchc, wchc
wchp = word("wchp")
assert f"/fl/eph\n\t{sid}\n" in wchp, wchp
dump = word("dump")
assert dump.startswith("SessionTracker dump:\nSession Sets ("), dump
assert re.search(r"\d+ expire at \w{3} \w{3} \d\d \d\d:\d\d:\d\d UTC \d{4}:\n", dump), dump
assert f"ephemeral nodes dump:\nSessions with Ephemerals (1):\n{sid}:\n\t/fl/eph\n" in dump, dump
assert "Connections dump:\n" in dump, dump
assert re.fullmatch(r"[0-9a-f]+: -?\d+\n", word("hash")), word("hash")
dirs = word("dirs")
assert re.fullmatch(r"datadir_size: \d+\nlogdir_size: \d+\n", dirs) and "logdir_size: 0\n" not in dirs, dirs
assert "Received: 0\n" not in word("srvr")
assert word("srst") == "Server stats reset.\n"
assert re.search(r"Received: [01]\n", word("srvr")), word("srvr")
assert word("crst") == "Connection stats reset.\n"
assert f"sid={sid}" in word("cons")
for w in ["ruok", "srvr", "stat", "cons", "conf", "envi", "wchs", "mntr"]:
    assert "not executed" not in word(w), w
c.stop()
print("ok")
