#!/usr/bin/env python3
"""fsync(2) against fdatasync(2) on this disk, for 1 and 8 pages of 4 KiB,
overwritten in place or appended (growing the file), 300 rounds each; the
median of each in µs. Why SQLite is built with HAVE_FDATASYNC
(.cargo/config.toml; BENCHMARKS.md, "The commit log").

    python3 benches/fsync-modes.py [DIR]     (DIR: the disk to probe, default /tmp)
"""
import os
import statistics
import sys
import time

ROUNDS = 300
PAGE = b"x" * 4096
SPAN = 8 << 20  # the overwrite rounds cycle through 8 MiB written beforehand


def run(fd, sync, pages, append):
    if append:
        os.ftruncate(fd, 0)
        os.fsync(fd)
    else:
        os.pwrite(fd, b"\0" * SPAN, 0)
        os.fsync(fd)
    times, offset = [], 0
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(pages):
            os.pwrite(fd, PAGE, offset)
            offset += len(PAGE)
        sync(fd)
        times.append(time.perf_counter() - started)
        if not append and offset >= SPAN:
            offset = 0
    return statistics.median(times) * 1e6


def main():
    path = os.path.join(sys.argv[1] if len(sys.argv) > 1 else "/tmp", f"fsync-modes-{os.getpid()}.tmp")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    try:
        print(f"{'pages':>5} {'call':>9} {'write':>9} {'median':>9}")
        for pages in (1, 8):
            for name, sync in (("fsync", os.fsync), ("fdatasync", os.fdatasync)):
                for append in (False, True):
                    us = run(fd, sync, pages, append)
                    print(f"{pages:>5} {name:>9} {'append' if append else 'overwrite':>9} {us:>7.0f}µs")
    finally:
        os.close(fd)
        os.remove(path)


if __name__ == "__main__":
    main()
