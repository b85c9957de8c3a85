#!/usr/bin/env python3
"""perf/loopback-limit.py — this machine's loopback TCP bandwidth: one connection, 1 MiB
writes, SIZE_MIB mebibytes (default 4096), the reader in a second process. Prints MB/s and,
with a path argument, writes {"loopback_mb_s": ...} there as JSON.

usage: perf/loopback-limit.py [OUT_JSON] [SIZE_MIB]
"""
import json
import os
import socket
import sys
import time

out = sys.argv[1] if len(sys.argv) > 1 else None
size = (int(sys.argv[2]) if len(sys.argv) > 2 else 4096) << 20
chunk = 1 << 20
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
port = listener.getsockname()[1]
pid = os.fork()
if pid == 0:
    conn, _ = listener.accept()
    buf = bytearray(chunk)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = conn.recv_into(view)
        if n == 0:
            break
        got += n
    conn.sendall(b"k")
    os._exit(0)
sock = socket.create_connection(("127.0.0.1", port))
data = memoryview(bytes(chunk))
started = time.perf_counter()
sent = 0
while sent < size:
    sock.sendall(data)
    sent += chunk
sock.recv(1)
elapsed = time.perf_counter() - started
os.waitpid(pid, 0)
mb_s = size / elapsed / 1e6
print(f"loopback TCP, one connection, 1 MiB writes: {mb_s:.1f} MB/s")
if out:
    with open(out, "w") as f:
        json.dump({"loopback_mb_s": round(mb_s, 1), "bytes": size, "seconds": round(elapsed, 3)}, f, indent=2)
