#!/usr/bin/env python3
"""Memory and load time of the master index on a repository with millions of blobs.

Builds (once) a synthetic repository through the library: index files of 50,000 blobs each
(restic's size), random blob ids, ~10% tree blobs, packs of one type filled to 16 MiB with
plausible offsets, lengths and compressed sizes, a few packs over 256 MiB and tree blobs over
16 MiB (the rare values a compact table must still store exactly). The packs themselves are not written: loading the index
never reads them. Then measures, alternating the tools, each --repeat times:

* restique, in a fresh process: RSS after loading the index minus RSS of a process that opened a
  repository with an empty index (bytes per blob), the peak RSS while loading, the load time;
* restic 0.14: `restic list blobs` (it loads the whole index first) wall time, CPU and peak RSS,
  and `restic cat config` as its baseline RSS.

    .venv/bin/python scripts/index_scale.py [--blobs 2000000] [--repeat 3] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

PASSWORD = "index-scale"
BLOBS_PER_FILE = 50_000
CHEAP_KDF = (1 << 10, 8, 1)  # restic reads any scrypt parameters from the key file

# run in a fresh interpreter: open the repository, load its index, report RSS and time
PROBE = r"""
import json, resource, sys, time
from restique.repository.repository import open_repository

def rss():
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmRSS"].split()[0]) * 1024

repo = open_repository(sys.argv[1], sys.argv[2])
before = rss()
cpu0, t0 = time.process_time(), time.perf_counter()
repo.load_index()
blobs = len(repo.index)  # the tables merged: ready for queries
load, cpu = time.perf_counter() - t0, time.process_time() - cpu0
print(json.dumps({"blobs": blobs, "rss_before": before, "rss_after": rss(),
                  "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "load": load, "cpu": cpu}))
"""


def build_repository(path: str, blobs: int, seed: int = 1) -> None:
    from restique.backend.base import FileType
    from restique.repository.repository import init_repository

    rnd = random.Random(seed)
    started = time.perf_counter()
    with init_repository(path, PASSWORD, kdf_params=CHEAP_KDF) as repo:
        made = 0
        while made < blobs:
            count = min(BLOBS_PER_FILE, blobs - made)
            repo.save_unpacked(FileType.INDEX, index_text(rnd, count))
            made += count
    print(f"built {blobs:,} blobs in {-(-blobs // BLOBS_PER_FILE)} index files at {path} "
          f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def index_text(rnd: random.Random, count: int) -> bytes:
    """One index file of count blobs, written the way restic writes it: packs of one blob type
    filled to 16 MiB (1 in 500 to 300 MiB, as --pack-size or old restic versions make them)."""
    packs = []
    while count > 0:
        tree = rnd.random() < 0.1
        target = (300 if rnd.random() < 0.002 else 16) << 20
        blobs, offset = [], 0
        while offset < target and count > 0:
            plain = blob_size(rnd, tree)
            stored = (plain + plain // 4096 + 16 if rnd.random() < 0.5 else plain // rnd.choice((2, 3))) + 32
            blobs.append('{"id":"%s","type":"%s","offset":%d,"length":%d,"uncompressed_length":%d}' % (
                rnd.randbytes(32).hex(), "tree" if tree else "data", offset, stored, plain))
            offset += stored
            count -= 1
        packs.append('{"id":"%s","blobs":[%s]}' % (rnd.randbytes(32).hex(), ",".join(blobs)))
    return ('{"packs":[%s]}\n' % ",".join(packs)).encode()


def blob_size(rnd: random.Random, tree: bool) -> int:
    """Plaintext size: small files and chunks of big ones (restic's chunker: 512 KiB to 8 MiB,
    1 MiB on average); trees of a few KiB, and 1 in 2,000 over 16 MiB."""
    if tree:
        if rnd.random() < 0.0005:
            return rnd.randint(16 << 20, 64 << 20)
        return min(int(rnd.lognormvariate(8.5, 1.5)) + 1, 16 << 20)
    if rnd.random() < 0.5:
        return min(int(rnd.lognormvariate(8.5, 2)) + 1, 512 << 10)
    return min((512 << 10) + int(rnd.expovariate(1 / (512 << 10))), 8 << 20)


def probe_restique(path: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, path, PASSWORD], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def time_restic(path: str, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
    env["RESTIC_PASSWORD"] = PASSWORD
    with tempfile.NamedTemporaryFile("r") as report:
        t0 = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-o", report.name, "-f", "%U %S %M", "restic", "-r", path,
                        "--no-cache", "--no-lock", *args],
                       check=True, stdout=subprocess.DEVNULL, env=env)
        wall = time.perf_counter() - t0
        user, system, kib = report.read().split()
    return {"wall": wall, "cpu": float(user) + float(system), "peak": int(kib) * 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blobs", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "restique-index-scale"))
    args = parser.parse_args()
    big, empty = os.path.join(args.work, f"repo-{args.blobs}"), os.path.join(args.work, "repo-empty")
    if not os.path.exists(big):
        build_repository(big, args.blobs)
    if not os.path.exists(empty):
        build_repository(empty, 0)
    runs = {"mine": [], "empty": [], "restic": [], "restic_base": []}
    for _ in range(args.repeat):
        runs["empty"].append(probe_restique(empty))
        runs["mine"].append(probe_restique(big))
        runs["restic_base"].append(time_restic(big, "cat", "config"))
        runs["restic"].append(time_restic(big, "list", "blobs"))
    print_table(runs, args.blobs, args.repeat)


def print_table(runs: dict, blobs: int, repeat: int) -> None:
    def med(kind, key):
        return statistics.median(r[key] for r in runs[kind])

    assert all(r["blobs"] == blobs for r in runs["mine"]), "restique loaded a different number of blobs"
    mine_bytes = med("mine", "rss_after") - med("empty", "rss_after")
    restic_bytes = med("restic", "peak") - med("restic_base", "peak")
    print(f"{blobs:,} blobs, medians of {repeat} runs")
    print(f"{'':28}{'restique':>12}{'restic':>12}")
    print(f"{'bytes per blob (RSS)':28}{mine_bytes / blobs:12.1f}{restic_bytes / blobs:12.1f}")
    print(f"{'peak RSS MiB':28}{med('mine', 'peak') / 2**20:12.1f}{med('restic', 'peak') / 2**20:12.1f}")
    print(f"{'baseline RSS MiB':28}{med('empty', 'rss_after') / 2**20:12.1f}"
          f"{med('restic_base', 'peak') / 2**20:12.1f}")
    print(f"{'index load s (wall)':28}{med('mine', 'load'):12.2f}"
          f"{med('restic', 'wall') - med('restic_base', 'wall'):12.2f}")
    print(f"{'index load s (cpu)':28}{med('mine', 'cpu'):12.2f}"
          f"{med('restic', 'cpu') - med('restic_base', 'cpu'):12.2f}")
    print(f"{'whole command s (wall)':28}{'':12}{med('restic', 'wall'):12.2f}  (restic list blobs)")
    print("restic's figures are `list blobs` minus `cat config` (start-up, key, config); its list "
          "output goes to /dev/null")


if __name__ == "__main__":
    main()
