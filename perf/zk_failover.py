#!/usr/bin/env python3
"""How long ZooKeeper clients go without a successful write when the leader is killed.

perf/zk_failover.py CONNECT [--kills K] [--clients C] [--json PATH] [--log-dir DIR] [--label TEXT]

CONNECT lists every server (127.0.0.1:PORT,...); any ZooKeeper-protocol ensemble: Braid or
ZooKeeper itself. C kazoo clients (each given the whole connect string, so they spread over the
servers and move on their own when theirs dies) write their own znode in a loop. K times: the
server whose `srvr` says `Mode: leader` is SIGKILLed and restarted (the command line, directory
and environment it had) once every client wrote again; when it answers `imok` and every client
wrote again after that, each client's outage is its longest time without a successful write
around the kill (from its last success before it). Clients of the killed server reconnect elsewhere
(their session survives); clients of the others wait for the new leader.

Prints one line per kill and a summary (outage p50 / max over all clients and kills, and the
worst client per kill); --json writes the same. Servers this script restarted are killed at the
end (the ones it never touched are the caller's to stop).
"""
import argparse
import bisect
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError


def four_letter(port, word):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(word.encode())
            out = b""
            while chunk := s.recv(4096):
                out += chunk
            return out.decode(errors="replace")
    except OSError:
        return ""


def listening_pid(port):
    """The pid of the process listening on 127.0.0.1:port (from /proc, no other tool)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    return None


class Writer(threading.Thread):
    """One client writing its own znode as fast as it is answered; keeps success times."""

    def __init__(self, connect, n, stop):
        super().__init__(daemon=True)
        self.client = KazooClient(hosts=connect, timeout=10.0, connection_retry={"max_tries": -1, "delay": 0.05, "max_delay": 0.2})
        self.path = f"/failover/c{n}"
        self.stop = stop
        self.lock = threading.Lock()
        self.successes = []

    def start_client(self):
        self.client.start(timeout=30)
        self.client.ensure_path(self.path)

    def run(self):
        i = 0
        while not self.stop.is_set():
            try:
                self.client.set(self.path, str(i).encode())
                with self.lock:
                    self.successes.append(time.monotonic())
                i += 1
            except (KazooException, KazooTimeoutError):
                time.sleep(0.005)

    def longest_gap(self, start, end):
        """The longest time without a success between the last success before `start` and the
        first after `end` (the client's outage around a kill)."""
        with self.lock:
            i = max(bisect.bisect_left(self.successes, start) - 1, 0)
            j = bisect.bisect_right(self.successes, end)
            times = self.successes[i : j + 1]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    def first_success_after(self, t):
        with self.lock:
            i = bisect.bisect_right(self.successes, t)
            return self.successes[i] if i < len(self.successes) else None


def wait_until(check, what, seconds=60):
    """Polls `check` until it holds; gives up (ending the run) after `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {seconds} s waiting for {what}")
        time.sleep(0.01)


def main():
    # A SIGTERM ends the run through the cleanup below (restarted servers are killed).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("connect")
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--json")
    ap.add_argument("--label", default="")
    ap.add_argument("--log-dir", default=".", help="where restarted servers write their output")
    args = ap.parse_args()
    ports = [int(hp.rsplit(":", 1)[1]) for hp in args.connect.split(",")]

    stop = threading.Event()
    writers = [Writer(args.connect, n, stop) for n in range(args.clients)]
    for w in writers:
        w.start_client()
        w.start()
    restarted = {}
    kills = []
    try:
        time.sleep(2)
        for k in range(args.kills):
            leader = next((p for p in ports if "Mode: leader" in four_letter(p, "srvr")), None)
            if leader is None:
                raise SystemExit("no server says it is the leader")
            pid = listening_pid(leader)
            if pid is None:
                raise SystemExit(f"no process listens on {leader}")
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[:-1]
            cwd = os.readlink(f"/proc/{pid}/cwd")
            env = dict(
                kv.split(b"=", 1) for kv in open(f"/proc/{pid}/environ", "rb").read().split(b"\0") if b"=" in kv
            )
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            for n, w in enumerate(writers):
                wait_until(lambda: w.first_success_after(killed_at) is not None, f"client {n} writing after the kill")
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            while listening_pid(leader) is not None:
                time.sleep(0.05)
            log = open(os.path.join(args.log_dir, f"failover-restart-{leader}.log"), "ab")
            proc = subprocess.Popen(cmdline, cwd=cwd, env=env, stdout=log, stderr=log, start_new_session=True)
            restarted[leader] = proc
            wait_until(lambda: four_letter(leader, "ruok") == "imok", f"the server on {leader} answering after its restart")
            # Settled: every client wrote again after the restart.
            back = time.monotonic()
            for n, w in enumerate(writers):
                wait_until(lambda: w.first_success_after(back) is not None, f"client {n} writing after the restart")
            time.sleep(1)
            # Every client's outage: its longest time without a successful write from the kill
            # until it wrote again after the restart.
            outages = [w.longest_gap(killed_at, time.monotonic()) for w in writers]
            ms = sorted(round(o * 1000) for o in outages)
            kills.append({"leader_port": leader, "outage_ms": ms})
            print(f"{args.label}kill {k + 1}: leader on {leader}; client outages ms: {ms}", flush=True)
    finally:
        stop.set()
        for w in writers:
            w.join(timeout=5)
            try:
                w.client.stop()
                w.client.close()
            except Exception:  # noqa: BLE001 - the run is over; a client that fails to stop is gone anyway
                pass
        for proc in restarted.values():
            proc.kill()
            proc.wait()
    every = [o for k in kills for o in k["outage_ms"]]
    worst = [max(k["outage_ms"]) for k in kills]
    summary = {
        "kills": len(kills),
        "clients": args.clients,
        "outage_ms": {
            "p50": statistics.median(every),
            "max": max(every),
            "worst_client_per_kill": worst,
            "worst_client_median": statistics.median(worst),
        },
        "runs": kills,
    }
    print(
        f"{args.label}{len(kills)} leader kills, {args.clients} clients: outage p50 {summary['outage_ms']['p50']} ms, "
        f"max {summary['outage_ms']['max']} ms; worst client per kill {worst} ms",
        flush=True,
    )
    if args.json:
        json.dump(summary, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    sys.exit(main())
