#!/usr/bin/env python3
"""Time `restique restore` against `restic restore` of the same restic-made repository.

Generates a tree (default 5,000 small files of 0-16 KiB in 50 directories, half random and
half text, plus 3 large random files of 40 MiB), backs it up once with the real restic, then
restores the snapshot with each tool into fresh empty directories, alternating the tools,
and prints the median wall time, CPU time (user + system) and peak RSS of each and their
ratios (CPU time is the figure that survives a busy machine). Every restore is checked
against the source tree (content, mode, mtime) outside the timed part.

    python scripts/bench_restore.py [--files 5000] [--large 3] [--large-mib 40] [--repeat 3]
                                    [--work DIR] [--restique 'python -m restique']

Work goes to /dev/shm when it has room (warm, in-memory: measures the tools, not the disk).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PASSWORD = "bench-password"
WORDS = [w.encode() for w in "alpha beta gamma delta restic backup chunk pack index tree blob snapshot "
         "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()]


def make_tree(root: str, files: int, large: int, large_mib: int, seed: int = 42) -> int:
    rnd = random.Random(seed)
    total = 0
    dirs = max(1, files // 100)
    for d in range(dirs):
        os.makedirs(os.path.join(root, f"dir{d:03d}", "sub"), exist_ok=True)
    for i in range(files):
        d = os.path.join(root, f"dir{i % dirs:03d}", "sub" if i % 3 == 0 else "")
        size = int(rnd.lognormvariate(8.3, 1.0)) % (16 * 1024)
        if i % 2:
            data = rnd.randbytes(size)
            name = f"file{i:05d}.bin"
        else:
            data = b" ".join(rnd.choice(WORDS) for _ in range(size // 6 + 1))[:size]
            name = f"file{i:05d}.txt"
        path = os.path.join(d, name)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_123_456_789 + i))
        total += size
    for i in range(large):
        path = os.path.join(root, f"large{i}.bin")
        with open(path, "wb") as f:
            for _ in range(large_mib):
                f.write(rnd.randbytes(1 << 20))
        total += large_mib << 20
    return total


def digest(root: str) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            h.update(os.path.relpath(path, root).encode() + b"%o %d" % (st.st_mode, st.st_mtime_ns))
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
    return h.hexdigest()


def run(cmd, env):
    """(wall seconds, CPU seconds, peak RSS in MiB) of cmd, which must succeed."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            err.seek(0)
            sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read().decode(errors='replace')}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--large", type=int, default=3)
    ap.add_argument("--large-mib", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", default=None)
    ap.add_argument("--restic", default="restic")
    ap.add_argument("--restique", default=f"{shlex.quote(sys.executable)} -m restique")
    args = ap.parse_args()

    base = args.work or ("/dev/shm" if shutil.disk_usage("/dev/shm").free > 2 << 30 else None)
    work = tempfile.mkdtemp(prefix="bench-restore-", dir=base)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
    env["RESTIC_PASSWORD"] = PASSWORD
    try:
        src = os.path.join(work, "src")
        size = make_tree(src, args.files, args.large, args.large_mib)
        repo = os.path.join(work, "repo")
        run([args.restic, "-r", repo, "init"], env)
        run([args.restic, "-r", repo, "backup", src], env)
        want = digest(src)
        print(f"tree: {args.files} small files + {args.large} x {args.large_mib} MiB = {size / 2**20:.1f} MiB, in {work}")

        tools = {"restique": shlex.split(args.restique), "restic": [args.restic]}
        times = {name: [] for name in tools}  # (wall, cpu, rss) per repeat
        for r in range(args.repeat):
            order = list(tools) if r % 2 == 0 else list(reversed(tools))
            for name in order:
                target = os.path.join(work, f"out-{name}-{r}")
                cache = os.path.join(work, f"cache-{name}")
                t = run(tools[name] + ["-r", repo, "--cache-dir", cache, "restore", "latest", "--target", target], env)
                times[name].append(t)
                got = digest(os.path.join(target, src.lstrip("/")))
                if got != want:
                    sys.exit(f"{name}: restored tree differs from the source")
                shutil.rmtree(target)
                print(f"  repeat {r + 1}: {name:9s} {t[0]:6.2f} s wall {t[1]:6.2f} s CPU {t[2]:6.1f} MiB")
        medians = {name: [statistics.median(col) for col in zip(*runs)] for name, runs in times.items()}
        for name, (wall, cpu, rss) in medians.items():
            print(f"{name:8s} restore: {wall:.2f} s wall, {cpu:.2f} s CPU, {rss:.1f} MiB (median of {args.repeat})")
        a, b = medians["restique"], medians["restic"]
        print(f"ratio restique/restic: wall {a[0] / b[0]:.2f}, CPU {a[1] / b[1]:.2f}, RSS {a[2] / b[2]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
