#!/usr/bin/env python3
"""Benchmark the restic-compatible chunker (not a test).

Chunks about 1 GiB of random data held in memory, through Chunker.chunks()
on a BytesIO (so the numbers include reading into the chunker's buffers and
copying every chunk into its own bytes object), on one thread and then on two
threads each chunking its own stream concurrently.  Also reports the raw
scanning rate of cut_lengths() on a bytes buffer.

    python scripts/bench_chunker.py [--size-mib 1024] [--repeat 3]
"""
from __future__ import annotations

import argparse
import io
import os
import random
import sys
import threading
import time

try:
    from restique.repository.chunker import Chunker, random_polynomial
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from restique.repository.chunker import Chunker, random_polynomial

MIB = 1024 * 1024


def make_data(size: int, seed: int) -> bytes:
    rnd = random.Random(seed)  # fast, and reproducible chunk counts
    piece = 64 * MIB
    return b"".join(rnd.randbytes(min(piece, size - off)) for off in range(0, size, piece))


def chunk_stream(chunker: Chunker, data: bytes, out: list) -> None:
    n = total = 0
    for c in chunker.chunks(io.BytesIO(data)):
        n += 1
        total += len(c)
    out.append((n, total))


def bench_threads(chunker: Chunker, streams: list[bytes]) -> tuple[float, float, list]:
    """(wall seconds, CPU seconds of the process, per-stream results)"""
    results: list = []
    threads = [threading.Thread(target=chunk_stream, args=(chunker, d, results)) for d in streams]
    c0, t0 = time.process_time(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, time.process_time() - c0, results


def best_of(n: int, fn):
    runs = [fn() for _ in range(n)]
    return min(runs, key=lambda r: r[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024, help="bytes per stream (MiB), default 1024")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs, default 3")
    args = ap.parse_args()

    size = args.size_mib * MIB
    pol = random_polynomial()
    chunker = Chunker(pol)
    print(f"polynomial {pol:#x}; generating {args.size_mib} MiB x 2 of random data ...", flush=True)
    a = make_data(size, 1)
    b = make_data(size, 2)

    rows = []

    def scan_only():
        c0, t0 = time.process_time(), time.perf_counter()
        n = len(chunker.cut_lengths(a))
        return time.perf_counter() - t0, time.process_time() - c0, n

    wall, cpu, n = best_of(args.repeat, scan_only)
    rows.append(("cut_lengths (scan only), 1 thread", size, wall, cpu, n))

    wall, cpu, res = best_of(args.repeat, lambda: bench_threads(chunker, [a]))
    assert res[0][1] == size
    rows.append(("chunks(BytesIO), 1 thread", size, wall, cpu, res[0][0]))

    wall, cpu, res = best_of(args.repeat, lambda: bench_threads(chunker, [a, b]))
    assert all(total == size for _, total in res)
    rows.append(("chunks(BytesIO), 2 threads", 2 * size, wall, cpu, sum(n for n, _ in res)))

    print()
    print(f"{'mode':<36} {'MiB':>6} {'wall s':>7} {'MB/s':>7} {'CPU s':>7} {'MB/CPU-s':>9} {'chunks':>7}")
    for name, nbytes, wall, cpu, nchunks in rows:
        print(
            f"{name:<36} {nbytes // MIB:>6} {wall:>7.3f} {nbytes / wall / 1e6:>7.0f} "
            f"{cpu:>7.3f} {nbytes / cpu / 1e6:>9.0f} {nchunks:>7}"
        )
    print(f"\n(os.cpu_count() = {os.cpu_count()}; MB = 10**6 bytes; best of {args.repeat} by wall time)")


if __name__ == "__main__":
    main()
