"""Where a backup of one big file spends its CPU: each per-byte stage timed alone, on one
thread, over the same file; then (with --backup) whole backups by restique and restic,
alternating, into fresh local repositories with cheap keys.

    python scripts/bench_throughput.py FILE [--mib N] [--backup RUNS] [--stdin-file IMAGE]
                                            [--repo-dir DIR]

Stage figures are MB/s of input per core (CPU time of this process), so they stay
meaningful on a loaded machine; their sum is the CPU a backup cannot do without (the
floor). Backups report wall, user, sys, peak RSS and MB/s; --repo-dir puts their
repositories on a memory file system (a tmpfs) to leave the disk's fsyncs out.
"""
import argparse
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zstandard

from restique import _seal
from restique.repository.chunker import Chunker, random_polynomial

PASSWORD = "bench"
PACK_SIZE = 16 * 1024 * 1024


def cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def stage(name: str, nbytes: int, fn) -> float:
    """Run fn, print its throughput per core, return its CPU seconds."""
    c0, w0 = cpu(), time.perf_counter()
    fn()
    c, w = cpu() - c0, time.perf_counter() - w0
    print(f"{name:<44} {nbytes / 1e6 / max(c, 1e-9):8.0f} MB/s per core  ({c:.2f} s cpu, {w:.2f} s wall)")
    return c


def stages(path: str, limit: int) -> None:
    with open(path, "rb") as f:
        data = f.read(limit)
    n = len(data)
    view = memoryview(data)
    lengths = Chunker(random_polynomial()).cut_lengths(data)
    chunks, pos = [], 0
    for length in lengths:
        chunks.append(view[pos:pos + length])
        pos += length
    print(f"{n / 2**20:.0f} MiB, {len(chunks)} chunks")
    keys = (os.urandom(32), os.urandom(16), os.urandom(16))

    def read_file():
        buf = bytearray(4 << 20)
        with open(path, "rb", buffering=0) as f:
            left = n
            while left > 0:
                got = f.readinto(buf)
                if not got:
                    break
                left -= got

    floor = stage("read (page cache, 4 MiB readinto)", n, read_file)
    floor += stage("chunk (Rabin scan)", n, lambda: Chunker(random_polynomial()).cut_lengths(data))
    stage("copy chunks to bytes", n, lambda: [bytes(c) for c in chunks])
    # twice: the blob's id (plaintext) and the pack's id (the sealed file)
    floor += 2 * stage("sha256 (hashlib)", n, lambda: [hashlib.sha256(c).digest() for c in chunks])
    for level in (3, 1, -5):
        comp = zstandard.ZstdCompressor(level=level)
        stage(f"zstd level {level} attempt (zstandard)", n, lambda: [comp.compress(c) for c in chunks])
    stage("seal, no compression (+ its checks)", n, lambda: [_seal.seal(*keys, c, 0) for c in chunks])
    floor += stage("seal, zstd 3 attempt (+ its checks)", n, lambda: [_seal.seal(*keys, c, 3) for c in chunks])
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.poly1305 import Poly1305

        def ctr():
            for c in chunks:
                Cipher(algorithms.AES(keys[0]), modes.CTR(os.urandom(16))).encryptor().update(c)

        stage("AES-256-CTR alone (OpenSSL)", n, ctr)
        stage("Poly1305 alone (OpenSSL)", n, lambda: [Poly1305.generate_tag(os.urandom(32), c) for c in chunks])
    except ImportError:
        pass

    def write_packs():
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(0, n, PACK_SIZE):
                fd = os.open(os.path.join(tmp, str(i)), os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    os.write(fd, view[i:i + PACK_SIZE])
                    os.fsync(fd)
                finally:
                    os.close(fd)

    floor += stage("pack write + fsync (16 MiB files)", n, write_packs)
    print(f"{'floor: read, chunk, 2 x sha256, seal, write':<44} {n / 1e6 / floor:8.0f} MB/s per core  "
          f"({floor:.2f} s cpu; {os.cpu_count()} cores: {n / 1e6 / floor * (os.cpu_count() or 1):.0f} MB/s at best)")


def timed(cmd, env, stdin=None) -> dict:
    w0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, used = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {err}")
    return {"wall": time.perf_counter() - w0, "user": used.ru_utime, "sys": used.ru_stime,
            "rss": used.ru_maxrss / 1024}


def tool_cmd(tool: str) -> list:
    if tool == "restique":
        return [sys.executable, "-m", "restique"]
    return [shutil.which("restic") or "restic"]


def fresh_repo(tool: str, repo: Path, env: dict) -> None:
    shutil.rmtree(repo, ignore_errors=True)
    timed(tool_cmd(tool) + ["-r", str(repo), "init"], env)
    if tool == "restic":  # the same cheap key restique's init makes under the test setting
        from restique.backend import FileType, open_backend
        from restique.repository.keys import INSECURE_TEST_KDF, create_key
        from restique.repository.repository import open_repository
        with open_repository(open_backend(str(repo)), PASSWORD) as r:
            old = r.list_ids(FileType.KEY)
            create_key(r.backend, r.key, PASSWORD, INSECURE_TEST_KDF)
            for key_id in old:
                r.backend.remove(FileType.KEY, key_id)


def repo_size(repo: Path) -> int:
    return sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())


def backups(path: str, runs: int, stdin_file: str, repo_dir: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-throughput-", dir=repo_dir or None))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC")}
    env.update(RESTIC_PASSWORD=PASSWORD, RESTIQUE_TEST_INSECURE_KEYS="1")
    size = os.path.getsize(path)
    results = {"restique": [], "restic": []}
    try:
        for run in range(runs):
            order = ("restique", "restic") if run % 2 == 0 else ("restic", "restique")
            for tool in order:
                repo = work / tool
                fresh_repo(tool, repo, env)
                u = timed(tool_cmd(tool) + ["-r", str(repo), "--no-cache", "backup", path], env)
                results[tool].append(u)
                print(f"{tool:<9} run {run}: {u['wall']:.2f} s wall, {u['user']:.2f} u, {u['sys']:.2f} s, "
                      f"{u['rss']:.0f} MiB, {size / 1e6 / u['wall']:.0f} MB/s wall, "
                      f"{size / 1e6 / (u['user'] + u['sys']):.0f} MB per cpu-s", flush=True)
        for tool, rows in results.items():
            med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            print(f"{tool:<9} median: {med['wall']:.2f} s wall, {med['user']:.2f} u, {med['sys']:.2f} s, "
                  f"{med['rss']:.0f} MiB, {size / 1e6 / med['wall']:.0f} MB/s wall, "
                  f"{size / 1e6 / (med['user'] + med['sys']):.0f} MB per cpu-s")
        if stdin_file:
            for tool in ("restique", "restic"):
                repo = work / tool
                fresh_repo(tool, repo, env)
                with open(stdin_file, "rb") as f:
                    u = timed(tool_cmd(tool) + ["-r", str(repo), "--no-cache", "backup", "--stdin",
                                                "--stdin-filename", "image.img"], env, stdin=f)
                print(f"{tool:<9} {Path(stdin_file).name} via --stdin: repository {repo_size(repo)} bytes, "
                      f"{u['wall']:.2f} s wall, {u['user']:.2f} u, {u['sys']:.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--mib", type=int, default=512, help="how much of the file the stage timings use")
    ap.add_argument("--backup", type=int, default=0, metavar="RUNS", help="whole backups per tool")
    ap.add_argument("--stdin-file", default="", help="also back up this file through --stdin, both tools")
    ap.add_argument("--repo-dir", default="", help="where the backups' repositories go (default: the temp dir)")
    ap.add_argument("--no-stages", action="store_true")
    args = ap.parse_args()
    # backups first: a child started by a process holding the stages' data reports that
    # process's resident memory as its own peak (Linux carries it over the fork)
    if args.backup or args.stdin_file:
        backups(args.file, args.backup, args.stdin_file, args.repo_dir)
    if not args.no_stages:
        stages(args.file, args.mib << 20)


if __name__ == "__main__":
    main()
