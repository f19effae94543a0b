#!/usr/bin/env python3
"""Many clients, one repository: 16 restique backups into one S3 repository on a SeaweedFS
cluster at the same time, while one of its volume servers goes away and comes back.

Starts a SeaweedFS cluster on 127.0.0.1 as separate processes (a master, two volume servers,
a filer with its S3 gateway), initialises one repository, generates one folder per client
(a mix of small text and random files, a few large ones, and a part every client shares, so
the clients also write the same blobs at the same time), then starts every backup at once.
When an eighth of the data has reached the volume servers, one of them is killed (SIGKILL, as
when its machine dies; SIGTERM with --graceful) and started again --outage seconds later.
Afterwards every snapshot must be listed, restore and equal its folder, and `restic check
--read-data` must pass. Prints the time, the retries the clients announced on stderr (restic's
`... returned error, retrying after ...` lines) and the throughput.

    python scripts/many_clients.py [--quick] [--clients 16] [--mib 20-50] [--outage 10] [--graceful]
                                   [--retry-time 15m] [--work DIR] [--restique CMD] [--restic CMD]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))
import servers  # noqa: E402  (the test servers' start-up code, shared with the tests)

PASSWORD = "many-clients"
RETRY_NOTICE = "returned error, retrying after"
RETRY_SUCCESS = "operation successful after"
WORDS = ("backup restic chunk pack index tree blob snapshot lock key config data volume master filer "
         "alpha beta gamma delta lorem ipsum dolor sit amet").split()
MiB = 1 << 20


# --------------------------------------------------------------------------------------------
# the clients' folders


def text_block(rnd: random.Random, size: int) -> bytes:
    words = " ".join(rnd.choice(WORDS) for _ in range(size // 5 + 1)).encode()
    return words[:size]


def write_files(root: Path, rnd: random.Random, budget: int, prefix: str) -> int:
    """Small and medium files (log-normal sizes, median 8 KiB) in nested folders, half text
    and half random, until budget bytes are written."""
    text = text_block(rnd, 4 * MiB)
    written, number = 0, 0
    while written < budget:
        folder = root.joinpath(*(f"d{rnd.randrange(8)}" for _ in range(rnd.randrange(1, 4))))
        folder.mkdir(parents=True, exist_ok=True)
        size = min(int(rnd.lognormvariate(9, 1.5)), budget - written, 2 * MiB)
        if number % 2:
            data = rnd.randbytes(size)
        else:
            start = rnd.randrange(len(text) - size) if size < len(text) else 0
            data = text[start:start + size]
        (folder / f"{prefix}{number}.{'bin' if number % 2 else 'txt'}").write_bytes(data)
        written, number = written + size, number + 1
    return written


def make_folder(root: Path, client: int, mib: int) -> int:
    """One client's folder of about mib MiB: 10% shared with every client, 40% in two large
    random files, the rest in small files."""
    root.mkdir(parents=True)
    total = write_files(root / "shared", random.Random(0), mib * MiB // 10, "common")
    rnd = random.Random(client + 1)
    for n in range(2):
        data = rnd.randbytes(mib * MiB // 5)
        (root / f"large{n}.bin").write_bytes(data)
        total += len(data)
    return total + write_files(root / "own", rnd, mib * MiB - total, "file")


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with open(path, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# the run


class Clients:
    """The commands every client runs, with one environment."""

    def __init__(self, restique: list, restic: list, repo: str, env: dict, logs: Path):
        self.restique, self.restic, self.repo, self.env, self.logs = restique, restic, repo, env, logs

    def run(self, tool: list, *args, timeout=1800) -> subprocess.CompletedProcess:
        return subprocess.run([*tool, "-r", self.repo, *map(str, args)], env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout)

    def start_backup(self, number: int, folder: Path) -> subprocess.Popen:
        with open(self.logs / f"client{number}.err", "wb") as err:
            command = [*self.restique, "-r", self.repo, "backup", "--host", f"client{number}", str(folder)]
            return subprocess.Popen(command, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err)

    def stderr_of(self, number: int) -> str:
        return (self.logs / f"client{number}.err").read_text(errors="replace")


def stored_bytes(cluster) -> int:
    return sum(f.stat().st_size for d in cluster.folder.glob("volume*") for f in d.glob("*.dat"))


def outage(cluster, threshold: int, seconds: float, backups: list, events: list, t0: float, graceful: bool) -> None:
    """Kill the second volume server (or stop it, graceful) once threshold bytes are stored,
    start it seconds later."""
    base = stored_bytes(cluster)
    while stored_bytes(cluster) - base < threshold:
        if all(b.poll() is not None for b in backups):
            events.append("every backup ended before the outage")
            return
        time.sleep(0.2)
    volume = cluster.volumes[1]
    started = time.monotonic()
    events.append(f"{time.monotonic() - t0:.1f} s: volume server 1 {'stopped' if graceful else 'killed'} "
                  f"({sum(b.poll() is None for b in backups)} backups running)")
    if graceful:
        volume.stop()
    else:
        volume.kill()
    time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    volume.start()
    events.append(f"{time.monotonic() - t0:.1f} s: volume server 1 listening again")


def back_up_all(clients: Clients, cluster, folders: list, total: int, outage_seconds: float, graceful: bool) -> tuple:
    """Every backup at once, the outage in the middle: exit codes, seconds, what happened when."""
    t0 = time.monotonic()
    backups = [clients.start_backup(n, folder) for n, folder in enumerate(folders)]
    events = []
    interrupter = threading.Thread(target=outage,
                                   args=(cluster, total // 8, outage_seconds, backups, events, t0, graceful))
    interrupter.start()
    codes = [b.wait() for b in backups]
    elapsed = time.monotonic() - t0
    interrupter.join()
    return codes, elapsed, events


def verify(clients: Clients, folders: list, work: Path) -> list:
    """Problems found: snapshots missing, restores that differ, check failing."""
    problems = []
    listed = clients.run(clients.restique, "snapshots", "--json")
    snapshots = {s["hostname"]: s["id"] for s in json.loads(listed.stdout or b"[]") or []}
    if listed.returncode or len(snapshots) != len(folders):
        problems.append(f"snapshots: exit {listed.returncode}, {len(snapshots)} of {len(folders)} listed "
                        f"{listed.stderr.decode(errors='replace').strip()[-300:]}")

    def restore(number_folder):
        number, folder = number_folder
        sid = snapshots.get(f"client{number}")
        if sid is None:
            return None
        target = work / f"restored{number}"
        done = clients.run(clients.restique, "restore", sid, "--target", target)
        if done.returncode:
            return f"client{number}: restore exit {done.returncode}: {done.stderr.decode(errors='replace')[-300:]}"
        same = tree_digest(target / str(folder).lstrip("/")) == tree_digest(folder)
        shutil.rmtree(target)
        return None if same else f"client{number}: the restored folder differs from the original"

    with ThreadPoolExecutor(4) as pool:
        problems += [p for p in pool.map(restore, enumerate(folders)) if p]
    check = clients.run(clients.restic, "check", "--read-data")
    if check.returncode:
        problems.append(f"restic check --read-data: exit {check.returncode}: "
                        f"{(check.stdout + check.stderr).decode(errors='replace')[-800:]}")
    return problems


def retries(clients: Clients, count: int) -> list:
    """(notices, recoveries) each client printed on stderr."""
    found = []
    for number in range(count):
        text = clients.stderr_of(number)
        found.append((text.count(RETRY_NOTICE), text.count(RETRY_SUCCESS)))
    return found


def report(codes, elapsed, events, retry_counts, total, clients, problems) -> None:
    print(f"{len(codes)} clients, {total / MiB:.0f} MiB in all, backed up in {elapsed:.1f} s: "
          f"{total / MiB / elapsed:.1f} MiB/s together; load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    for event in events:
        print(f"  {event}")
    notices = sum(n for n, _ in retry_counts)
    print(f"retry notices: {notices} in all, from {sum(1 for n, _ in retry_counts if n)} clients; "
          f"'operation successful after' lines: {sum(s for _, s in retry_counts)}")
    for number, (code, (notice, success)) in enumerate(zip(codes, retry_counts)):
        line = f"  client{number}: exit {code}, {notice} retry notices, {success} recoveries"
        if code:
            line += f": {clients.stderr_of(number).strip().splitlines()[-1:]}"
        print(line)
    print("every snapshot listed and restored equal to its folder; restic check --read-data passed"
          if not problems else "PROBLEMS:\n  " + "\n  ".join(problems))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="folders of 4-8 MiB")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--mib", default="20-50", help="size range of each client's folder, in MiB")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds the volume server is away")
    parser.add_argument("--graceful", action="store_true", help="stop the volume server with SIGTERM, not SIGKILL")
    parser.add_argument("--retry-time", help="RESTIQUE_BACKEND_RETRY_TIME for the clients (default: restic's 15m)")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--restique", default=f"{shlex.quote(sys.executable)} -m restique")
    parser.add_argument("--restic", default="restic")
    args = parser.parse_args(argv)
    if args.quick:
        args.mib = "4-8"
    low, _, high = args.mib.partition("-")
    args.mib = (int(low), int(high or low))
    return args


def environment(work: Path, retry_time) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
    env = servers.s3_environment(env, work / "aws")
    env.update(RESTIC_PASSWORD=PASSWORD, RESTIQUE_TEST_INSECURE_KEYS="1")
    if retry_time:
        env["RESTIQUE_BACKEND_RETRY_TIME"] = retry_time
    return env


def main(argv=None) -> int:
    args = parse_args(argv)
    shm = Path("/dev/shm")
    base = args.work or (shm if shm.is_dir() and shutil.disk_usage(shm).free > 8 << 30 else None)
    work = Path(tempfile.mkdtemp(prefix="many-clients-", dir=base))
    cluster = servers.SeaweedCluster(work / "cluster")
    try:
        sizes = random.Random(99).choices(range(args.mib[0], args.mib[1] + 1), k=args.clients)
        folders = [work / "clients" / f"client{n}" for n in range(args.clients)]
        total = sum(make_folder(folder, n, mib) for n, (folder, mib) in enumerate(zip(folders, sizes)))
        cluster.start()
        (work / "logs").mkdir()
        clients = Clients(shlex.split(args.restique), shlex.split(args.restic), cluster.url("backups/repo"),
                          environment(work, args.retry_time), work / "logs")
        init = clients.run(clients.restique, "init")
        if init.returncode:
            raise SystemExit(f"init failed: {init.stderr.decode(errors='replace')}")
        codes, elapsed, events = back_up_all(clients, cluster, folders, total, args.outage, args.graceful)
        retry_counts = retries(clients, args.clients)
        problems = [f"client{n}: backup exit {c}" for n, c in enumerate(codes) if c]
        problems += verify(clients, folders, work)
        report(codes, elapsed, events, retry_counts, total, clients, problems)
        if problems and args.work:
            print(f"logs kept in {work / 'logs'} and {cluster.folder}")
        return 1 if problems else 0
    finally:
        cluster.stop()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
