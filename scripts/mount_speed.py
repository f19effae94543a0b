#!/usr/bin/env python3
"""Browsing speed: `restique mount` and `restique serve` against `restic mount` on one repository.

Measures, each on a fresh mount (cold: nothing listed or read yet):
  * the first listing of a 30,000-file snapshot through the mount (`find MOUNT/ids/<id>`),
    wall time, the CPU time the mounting process spent, and the kernel requests it answered
    (its write calls: one per answer);
  * reading a 512 MiB file through the mount (`cat`), MB/s and the mounting process's CPU time;
  * restique serve: the same file over HTTP, MB/s; then 20 concurrent downloads of it, with
    the server's resident memory before and at its highest during them.

    python scripts/mount_speed.py [--work DIR] [--repeat 3] [--files 30000] [--big-mib 512]
                                  [--tree DIR] [--big FILE] [--restique 'python -m restique']
                                  [--find-only]

--find-only measures the first listing alone (no file read, no serve).

The data (a tree of small files and one random file) is generated under --work unless
--tree/--big name existing ones; the repository is made by restique init (cheap test keys)
and filled by restic backup, then served by each tool in turn. Needs root and /dev/fuse.
"""
from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PASSWORD = "bench-password"
TICKS = os.sysconf("SC_CLK_TCK")


def make_tree(root: str, files: int) -> None:
    rnd = random.Random(7)
    per_dir = 20
    for i in range(files):
        d = os.path.join(root, f"d{i // (per_dir * 50):03d}", f"s{i // per_dir:05d}")
        if i % per_dir == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:06d}.txt"), "wb") as f:
            f.write(rnd.randbytes(rnd.randint(0, 2048)))


def make_big(path: str, mib: int) -> None:
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))


def tool_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
    env.update(RESTIC_PASSWORD=PASSWORD, RESTIQUE_TEST_INSECURE_KEYS="1")
    return env


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def write_calls(pid: int) -> int:
    """Write system calls of the process so far (all its threads): a FUSE server writes each
    answer to the kernel in one."""
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("syscw:"):
                return int(line.split()[1])
    return 0


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Mount:
    def __init__(self, cmd: list, repo: str, cache: str, mnt: str):
        self.mnt = mnt
        self.proc = subprocess.Popen([*cmd, "-r", repo, "--cache-dir", cache, "mount", mnt], env=tool_env(),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not os.path.isdir(os.path.join(mnt, "ids")):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{cmd} mount did not come up: {self.proc.stderr.read().decode()}")
            time.sleep(0.05)
        self.top = os.path.join(mnt, "ids", os.listdir(os.path.join(mnt, "ids"))[0])

    def close(self) -> None:
        subprocess.run(["fusermount3", "-u", self.mnt], check=False, stderr=subprocess.DEVNULL)
        self.proc.wait(timeout=60)


def timed_find(m: Mount) -> tuple:
    """(wall s, CPU s of the mounting process, entries found, kernel requests answered)"""
    cpu, writes, start = cpu_seconds(m.proc.pid), write_calls(m.proc.pid), time.perf_counter()
    out = subprocess.run(["find", m.top], capture_output=True, check=True).stdout
    wall = time.perf_counter() - start
    return wall, cpu_seconds(m.proc.pid) - cpu, out.count(b"\n"), write_calls(m.proc.pid) - writes


def timed_read(m: Mount, path: str) -> tuple:
    """(MB/s, CPU s of the mounting process) reading path through the mount."""
    cpu, start, total = cpu_seconds(m.proc.pid), time.perf_counter(), 0
    with open(path, "rb", buffering=0) as f:
        while True:
            piece = f.read(1 << 20)
            if not piece:
                break
            total += len(piece)
    return total / (time.perf_counter() - start) / 1e6, cpu_seconds(m.proc.pid) - cpu


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def download(url: str) -> int:
    total = 0
    with urllib.request.urlopen(url, timeout=600) as r:
        while True:
            piece = r.read(1 << 20)
            if not piece:
                return total
            total += len(piece)


def measure_serve(cmd: list, repo: str, cache: str, sid: str, big_inner: str, clients: int) -> dict:
    port = free_port()
    proc = subprocess.Popen([*cmd, "-r", repo, "--cache-dir", cache, "serve", "--addr", f"127.0.0.1:{port}"],
                            env=tool_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdout.readline()  # the "Serving ..." line: listening now
        url = f"http://127.0.0.1:{port}/download/ids/{sid}{big_inner}"
        start = time.perf_counter()
        size = download(url)
        one = size / (time.perf_counter() - start) / 1e6
        before, peak, done = rss_mib(proc.pid), 0.0, threading.Event()

        def sample():
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_mib(proc.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        start = time.perf_counter()
        threads = [threading.Thread(target=download, args=(url,)) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        many = clients * size / (time.perf_counter() - start) / 1e6
        done.set()
        sampler.join()
        return {"http_mbs": one, "many_mbs": many, "rss_before": before, "rss_peak": peak}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def prepare(args) -> tuple:
    work = args.work or tempfile.mkdtemp(prefix="mount-speed-")
    tree, big = args.tree, args.big
    if tree is None:
        tree = os.path.join(work, "tree")
        if not os.path.isdir(tree):
            make_tree(tree, args.files)
    if big is None:
        big = os.path.join(work, "big.bin")
        if not os.path.exists(big):
            make_big(big, args.big_mib)
    repo = os.path.join(work, "repo")
    if not os.path.isdir(repo):
        subprocess.run([*args.restique_cmd, "-r", repo, "init"], env=tool_env(), check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["restic", "-r", repo, "--cache-dir", os.path.join(work, "cache-restic"), "backup",
                        "--quiet", os.path.abspath(tree), os.path.abspath(big)], env=tool_env(), check=True)
    return work, repo, os.path.abspath(big)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--files", type=int, default=30000)
    ap.add_argument("--big-mib", type=int, default=512)
    ap.add_argument("--tree")
    ap.add_argument("--big")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--restique", default=f"{shlex.quote(sys.executable)} -m restique")
    ap.add_argument("--find-only", action="store_true", help="measure the first listing alone")
    args = ap.parse_args()
    args.restique_cmd = shlex.split(args.restique)
    work, repo, big = prepare(args)
    tools = {"restic": ["restic"], "restique": args.restique_cmd}
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt, exist_ok=True)
    rows = {name: {"find": [], "cpu": [], "requests": [], "read": [], "read_cpu": []} for name in tools}
    for name, cmd in tools.items():  # fill each tool's cache with the tree packs first
        m = Mount(cmd, repo, os.path.join(work, f"cache-{name}"), mnt)
        sid = os.path.basename(m.top)
        try:
            timed_find(m)
        finally:
            m.close()
    for _ in range(args.repeat):
        for name, cmd in tools.items():  # alternating, so both see the same machine load
            cache = os.path.join(work, f"cache-{name}")
            m = Mount(cmd, repo, cache, mnt)
            try:
                wall, cpu, count, requests = timed_find(m)
            finally:
                m.close()
            rows[name]["find"].append(wall)
            rows[name]["cpu"].append(cpu)
            rows[name]["requests"].append(requests)
            mbs = read_cpu = float("nan")
            if not args.find_only:
                m = Mount(cmd, repo, cache, mnt)
                try:
                    mbs, read_cpu = timed_read(m, m.top + big)
                finally:
                    m.close()
            rows[name]["read"].append(mbs)
            rows[name]["read_cpu"].append(read_cpu)
            print(f"{name}: find {wall:.2f} s ({count} entries, {cpu:.2f} s CPU, {requests} requests), "
                  f"read {mbs:.0f} MB/s ({read_cpu:.2f} s CPU)", file=sys.stderr, flush=True)
    if not args.find_only:
        served = measure_serve(args.restique_cmd, repo, os.path.join(work, "cache-restique"), sid, big,
                               args.clients)
    load = os.getloadavg()[0]
    print(f"\n| measure (median of {args.repeat}, cold mounts) | restic 0.14 | restique |")
    print("| --- | ---: | ---: |")
    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in rows.items()}
    print(f"| first `find` of the snapshot ({count} entries), wall s | {med['restic']['find']:.2f} | "
          f"{med['restique']['find']:.2f} |")
    print(f"| the same, CPU s of the mount process | {med['restic']['cpu']:.2f} | {med['restique']['cpu']:.2f} |")
    print(f"| the same, kernel requests answered | {med['restic']['requests']:.0f} | "
          f"{med['restique']['requests']:.0f} |")
    if not args.find_only:
        print(f"| read {os.path.getsize(big) >> 20} MiB file through the mount, MB/s | {med['restic']['read']:.0f} | "
              f"{med['restique']['read']:.0f} |")
        print(f"| the same, CPU s of the mount process | {med['restic']['read_cpu']:.2f} | "
              f"{med['restique']['read_cpu']:.2f} |")
        print(f"| serve: the same file over HTTP, MB/s | - | {served['http_mbs']:.0f} |")
        print(f"| serve: {args.clients} concurrent downloads, MB/s in all | - | {served['many_mbs']:.0f} |")
        print(f"| serve: RSS before / peak during them, MiB | - | {served['rss_before']:.0f} / "
              f"{served['rss_peak']:.0f} |")
    print(f"\nload average at the end: {load:.1f} on {os.cpu_count()} CPUs")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
