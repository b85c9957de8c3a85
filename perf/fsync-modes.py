#!/usr/bin/env python3
"""fdatasync latency of small appends, by how the file's blocks were prepared.

perf/fsync-modes.py [DIR] [COUNT]

Writes COUNT (default 2000) 2 KiB chunks one after another, each followed by an fdatasync, into
a fresh file in DIR (default ./perf/out/fsync-modes) prepared six ways: plain appends, blocks
reserved with fallocate (KEEP_SIZE and not), a sparse file, and a file written with zeros
first. Prints p50/p90/p99 per mode. The metadata log appends into blocks reserved with
fallocate(KEEP_SIZE); ZooKeeper pads its log with a sparse extension.
"""
import ctypes, os, sys, time

DIR = sys.argv[1] if len(sys.argv) > 1 else "perf/out/fsync-modes"
COUNT = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
CHUNK = 2048
SIZE = 64 << 20
libc = ctypes.CDLL("libc.so.6", use_errno=True)
os.makedirs(DIR, exist_ok=True)


def fallocate(mode):
    def prepare(fd):
        if libc.fallocate(fd, mode, ctypes.c_long(0), ctypes.c_long(SIZE)) != 0:
            raise OSError(ctypes.get_errno(), "fallocate")
    return prepare


def zeroed(fd):
    for i in range(SIZE >> 20):
        os.pwrite(fd, b"\0" * (1 << 20), i << 20)


MODES = [
    ("append", lambda fd: None),
    ("fallocate_keep_size", fallocate(1)),
    ("fallocate", fallocate(0)),
    ("sparse", lambda fd: os.pwrite(fd, b"\0", SIZE - 1)),
    ("zeroed", zeroed),
]
for name, prepare in MODES:
    path = os.path.join(DIR, f"fsync-{name}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        prepare(fd)
        os.fsync(fd)
        chunk = b"x" * CHUNK
        took = []
        for i in range(COUNT):
            start = time.perf_counter()
            os.pwrite(fd, chunk, i * CHUNK)
            os.fdatasync(fd)
            took.append(time.perf_counter() - start)
        took.sort()
        pct = lambda q: took[min(len(took) - 1, int(len(took) * q))] * 1e6
        print(f"{name:20s} p50 {pct(0.5):6.0f} us  p90 {pct(0.9):6.0f} us  p99 {pct(0.99):6.0f} us")
    finally:
        os.close(fd)
        os.unlink(path)
