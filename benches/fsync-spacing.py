#!/usr/bin/env python3
"""How the latency of one fdatasync(2) of a 4 KiB overwrite depends on how
long the disk was left alone before it: back to back (what `lastmile bench`
probes before the load), and with 0.5, 2 and 20 ms between rounds (the bench's
probe during the load runs one every 20 ms; a concurrency-1 run commits about
every 0.5 ms). Median and p90 in µs of 3 s of rounds each, three passes.

    python3 benches/fsync-spacing.py [DIR]     (DIR: the disk to probe, default /tmp)

BENCHMARKS.md, "The fsync floor depends on spacing" (issue 12).
"""
import os
import sys
import time

PAGE = os.urandom(4096)
GAPS_MS = (0, 0.5, 2, 20)
SECONDS = 3.0


def probe(fd, gap_s):
    times = []
    end = time.monotonic() + SECONDS
    while time.monotonic() < end:
        os.pwrite(fd, PAGE, 0)
        started = time.perf_counter()
        os.fdatasync(fd)
        times.append(time.perf_counter() - started)
        if gap_s:
            time.sleep(gap_s)
    times.sort()
    return len(times), times[len(times) // 2] * 1e6, times[int(len(times) * 0.9)] * 1e6


def main():
    path = os.path.join(sys.argv[1] if len(sys.argv) > 1 else "/tmp", f"fsync-spacing-{os.getpid()}.tmp")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    try:
        os.pwrite(fd, b"\0" * 4096, 0)
        os.fsync(fd)
        print(f"{'pass':>4} {'gap':>7} {'rounds':>7} {'p50':>8} {'p90':>8}")
        for n in range(1, 4):
            for gap in GAPS_MS:
                rounds, p50, p90 = probe(fd, gap / 1000)
                print(f"{n:>4} {gap:>5}ms {rounds:>7} {p50:>6.0f}µs {p90:>6.0f}µs")
    finally:
        os.close(fd)
        os.unlink(path)


if __name__ == "__main__":
    main()
