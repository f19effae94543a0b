#!/usr/bin/env python3
"""restique against restic 0.14 over every remote backend, on loopback, in one run.

Starts the servers the backend tests use (sshd for sftp, `rclone serve restic` as the REST
server, SeaweedFS for S3; the rclone backend gets a local folder as its remote), then for each
backend backs up the shared bench's tree (30,000 files) and its random file (512 MiB), and
restores each snapshot with the cache warm (the cache the backup filled) and cold (an empty
--cache-dir). Every command runs for both tools, one after the other, the order alternating;
every restore is compared with its source outside the timed part. Prints one table: backend,
operation, then for restique and restic the wall seconds, the CPU seconds (user + system, the
command and the helpers it waited for: ssh, rclone) and the peak RSS (of the command or of a
helper, whichever is larger), then the wall and the CPU
ratios (below 1: restique is faster). With --repeat N each backend is measured N times, each time on new
repositories, and every cell is the median of the N. --ops picks the operations shown: a restore
still needs a backup, which then runs untimed.

    python scripts/backend_speed.py [--quick] [--backends sftp,rest,s3,rclone] [--ops backup,restore]
                                    [--repeat 1] [--scale 1] [--work DIR] [--bench DIR]
                                    [--restique CMD] [--restic CMD]

The data comes from the shared bench's generator (its workloads.py, in its default data folder);
--quick is scale 0.1 (3,000 files, 51 MiB). Both tools get the same environment and keys made
with the same cheap parameters, so neither pays half a second of scrypt per command.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))
import servers  # noqa: E402  (the test servers' start-up code, shared with the tests)

PASSWORD = "backend-speed"
TOOLS = ("restique", "restic")
BACKENDS = ("sftp", "rest", "s3", "rclone")
OPS = ("backup", "restore")
TIMEOUT = 3600


@dataclass
class Target:
    """One backend: each tool's repository location, the flags both pass, and the folders
    that hold the repositories on this machine (removed once the backend is measured)."""
    backend: str
    locations: dict
    flags: list = field(default_factory=list)
    storage: list = field(default_factory=list)
    round: int = 0


class Servers:
    """Starts each backend's server on first use; stack stops them all at the end. Each round
    of measurements gets repositories of its own on the same server."""

    def __init__(self, work: Path, stack: ExitStack):
        self.work, self.stack = work, stack
        self._started = {}

    def _keep(self, server):
        self.stack.callback(server.stop)
        return server

    def _server(self, backend: str, folder: Path):
        if backend not in self._started:
            folder.mkdir()
            self._started[backend] = self._start(backend, folder)
        return self._started[backend]

    def _start(self, backend: str, folder: Path):
        if backend == "sftp":
            sshd = servers.Sshd(folder)
            sshd.write_keys_and_config()
            return self._keep(sshd.start())
        if backend == "rest":
            return self._keep(servers.RcloneServer(folder / "served").start())
        if backend == "s3":
            return self._keep(servers.start_seaweedfs(folder))
        return None

    def target(self, backend: str, round_: int = 0) -> Target:
        if backend not in BACKENDS:
            raise SystemExit(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
        folder = self.work / backend
        server = self._server(backend, folder)
        names = {t: f"{t}-{round_}" for t in TOOLS}
        target = self._target(backend, folder, server, names)
        target.round = round_
        return target

    @staticmethod
    def _target(backend: str, folder: Path, server, names: dict) -> Target:
        if backend == "sftp":
            command = f"ssh -F {server.client_config} {servers.SSH_HOST} -s sftp"  # restic 0.14 has no sftp.args
            return Target(backend, {t: f"sftp:{servers.SSH_HOST}:{folder}/{names[t]}" for t in TOOLS},
                          ["-o", f"sftp.command={command}"], [folder / names[t] for t in TOOLS])
        if backend == "rest":
            return Target(backend, {t: f"rest:{server.url}/{names[t]}/" for t in TOOLS},
                          storage=[folder / "served" / names[t] for t in TOOLS])
        if backend == "s3":
            return Target(backend, {t: server.url(f"{names[t]}/repo") for t in TOOLS})
        return Target(backend, {t: f"rclone:{folder}/{names[t]}" for t in TOOLS},
                      storage=[folder / names[t] for t in TOOLS])


@dataclass
class Usage:
    """What one command cost: wall and CPU seconds, peak RSS in MiB."""
    wall: float
    cpu: float
    rss: float


class Runner:
    """Runs one tool's command against a repository and times it."""

    def __init__(self, commands: dict, env: dict):
        self.commands, self.env = commands, env
        self.failures = []

    def run(self, tool: str, target: Target, *args, cache_dir=None) -> Usage | None:
        cmd = [*self.commands[tool], "-r", target.locations[tool], *target.flags]
        if cache_dir is not None:
            cmd += ["--cache-dir", str(cache_dir)]
        cmd += [str(a) for a in args]
        with tempfile.TemporaryFile() as errors:
            status, usage = launch(cmd, self.env, errors)
            errors.seek(0)
            stderr = errors.read()
        if status != 0:
            tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
            self.failures.append(f"{target.backend} {tool} {' '.join(map(str, args[:2]))}: exit "
                                 f"{status}: {' | '.join(tail)}")
            return None
        return usage


# Runs one command and reports its exit status and usage. The command is started from this
# small process, not from the script: on Linux a new program's peak RSS starts at the peak of
# the process it was forked from, so a command forked from the script (which has imported
# restique, botocore and paramiko to swap the keys) was shown at least the script's 110 MiB.
_LAUNCHER = """
import os, signal, sys, time
timeout, out, cmd = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.close(out)
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
signal.signal(signal.SIGALRM, lambda *_: os.kill(pid, signal.SIGKILL))
signal.setitimer(signal.ITIMER_REAL, timeout)
_, status, used = os.wait4(pid, 0)
elapsed = time.perf_counter() - started
os.write(out, repr((os.waitstatus_to_exitcode(status), elapsed, used.ru_utime + used.ru_stime,
                    used.ru_maxrss)).encode())
"""


def launch(cmd: list, env: dict, errors) -> tuple:
    """(exit status, Usage) of cmd, killed after TIMEOUT. The usage counts the command's own
    waited-for children too (ssh, rclone); the wall time is from its start to its end."""
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(TIMEOUT), str(write_end), *cmd], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                                pass_fds=(write_end,))
        os.close(write_end)
        write_end = None
        with os.fdopen(read_end, "rb") as pipe:
            read_end = None
            report = pipe.read()
        proc.wait()
    finally:
        for fd in (read_end, write_end):
            if fd is not None:
                os.close(fd)
    if not report:
        return proc.returncode or 1, None
    status, wall, cpu, maxrss_kib = ast.literal_eval(report.decode())
    return status, Usage(wall, cpu, maxrss_kib / 1024)


def use_cheap_key(target: Target) -> None:
    """Replace the key restic's init made (scrypt tuned to half a second) by one with the
    parameters restique's init used under RESTIQUE_TEST_INSECURE_KEYS."""
    from restique.backend import FileType, open_backend
    from restique.backend.options import BackendOptions, parse_extended
    from restique.repository.keys import INSECURE_TEST_KDF, create_key
    from restique.repository.repository import open_repository

    options = BackendOptions(extended=parse_extended(target.flags[1::2]))
    with open_repository(open_backend(target.locations["restic"], options), PASSWORD) as repo:
        old = repo.list_ids(FileType.KEY)
        create_key(repo.backend, repo.key, PASSWORD, INSECURE_TEST_KDF)
        for key_id in old:
            repo.backend.remove(FileType.KEY, key_id)


def digest(path: Path, wl) -> str:
    """Content of a file or a tree (names, sizes, bytes, link targets), as one hash."""
    if path.is_dir():
        return wl.digest_summary(wl.tree_digest(str(path)))
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def timed_pair(runner: Runner, target: Target, turn: int, *args, cache_dirs=None) -> dict:
    """Both tools run the same command; the first to go alternates from one call to the next."""
    order = TOOLS if turn % 2 == 0 else TOOLS[::-1]
    cache_dirs = cache_dirs or {}
    return {tool: runner.run(tool, target, *args, cache_dir=cache_dirs.get(tool)) for tool in order}


def measure(target: Target, sources: dict, expected: dict, runner: Runner, work: Path, wl, ops) -> list:
    """Rows (operation, {tool: Usage}) for one backend on new repositories."""
    warm = {tool: work / "cache" / f"{target.backend}-{tool}-{target.round}" for tool in TOOLS}
    for tool in TOOLS:
        if runner.run(tool, target, "init", cache_dir=warm[tool]) is None:
            return []
    use_cheap_key(target)
    rows, turn = [], target.round  # who goes first alternates from row to row and round to round
    for name, source in sources.items():
        usage = timed_pair(runner, target, turn, "backup", source, cache_dirs=warm)
        if "backup" in ops:
            rows.append((f"backup {name}", usage))
        turn += 1
    if "restore" not in ops:
        return rows
    for name, source in sources.items():
        for cache in ("warm", "cold"):
            rows.append((f"restore {name}, {cache} cache",
                         restore_pair(runner, target, turn, source, expected[name], warm if cache == "warm" else None,
                                      work, wl)))
            turn += 1
    return rows


def restore_pair(runner, target, turn, source: Path, expected: str, warm, work: Path, wl) -> dict:
    """Restore the latest snapshot of source with each tool; a restore that differs from the
    source counts as a failure. A cold cache is an empty folder, made for each command."""
    outcome = {}
    for tool in (TOOLS if turn % 2 == 0 else TOOLS[::-1]):
        restored = Path(tempfile.mkdtemp(dir=work, prefix="restored-"))
        cache = warm[tool] if warm else Path(tempfile.mkdtemp(dir=work, prefix="cold-cache-"))
        try:
            usage = runner.run(tool, target, "restore", "latest", "--path", source, "--target", restored,
                               cache_dir=cache)
            inside = restored / str(source).lstrip("/")
            if usage is not None and digest(inside, wl) != expected:
                runner.failures.append(f"{target.backend} {tool} restore of {source}: differs from the source")
                usage = None
            outcome[tool] = usage
        finally:
            shutil.rmtree(restored, ignore_errors=True)
            if not warm:
                shutil.rmtree(cache, ignore_errors=True)
    return outcome


def median_rows(rounds: list) -> list:
    """One row per operation: each tool's median Usage over the rounds it did not fail in."""
    merged: dict = {}
    for rows in rounds:
        for operation, usages in rows:
            for tool, usage in usages.items():
                merged.setdefault(operation, {}).setdefault(tool, []).append(usage)
    return [(operation, {tool: _median(usages) for tool, usages in tools.items()})
            for operation, tools in merged.items()]


def _median(usages: list) -> Usage | None:
    done = [u for u in usages if u is not None]
    if not done:
        return None
    return Usage(*(statistics.median(getattr(u, f) for u in done) for f in ("wall", "cpu", "rss")))


def load_bench(bench: Path):
    """The shared bench's data generator, imported from its folder."""
    if not (bench / "workloads.py").exists():
        raise SystemExit(f"no workloads.py in {bench}: give the shared bench's folder with --bench")
    sys.path.insert(0, str(bench))
    import workloads
    return workloads


def prepare_data(wl, scale: float) -> dict:
    data = Path(wl.default_data_dir(scale))
    wl.ensure(str(data), ["random", "tree"], scale, log=lambda line: print(line, file=sys.stderr))
    sources = {"tree": data / "tree", "random file": data / "random.bin"}
    wl.warm([str(p) for p in sources.values()])  # the first tool must not pay for the page cache
    return sources


def environment(work: Path) -> dict:
    """What both tools see: no RESTIC_* of the caller's, the password, the S3 keys, cheap keys
    at restique's init, a temporary folder in the work folder. Python may keep the bytecode it
    compiles, as an installed program does: without it every restique command compiled each of
    its own modules again (a quarter of a small restore's CPU)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_") and k != "PYTHONDONTWRITEBYTECODE"}
    env = servers.s3_environment(env, work / "aws")
    (work / "tmp").mkdir()
    env.update(RESTIC_PASSWORD=PASSWORD, RESTIQUE_TEST_INSECURE_KEYS="1", TMPDIR=str(work / "tmp"))
    return env


def print_table(rows: list, file=None) -> None:
    """Per tool: wall s, CPU s, peak RSS MiB; then the wall ratio (and the CPU ratio)."""
    lines = [f"{'backend':8} {'operation':32} {'restique wall cpu  MiB':>23} {'restic wall cpu  MiB':>21}"
             f" {'wall':>5} {'cpu':>5}", "-" * 100]
    for backend, operation, usages in rows:
        mine, theirs = usages.get("restique"), usages.get("restic")
        cells = [f"{u.wall:7.2f} {u.cpu:6.2f} {u.rss:5.0f}" if u is not None else f"{'FAILED':>20}"
                 for u in (mine, theirs)]
        wall = f"{mine.wall / theirs.wall:.2f}" if mine and theirs and theirs.wall else "-"
        cpu = f"{mine.cpu / theirs.cpu:.2f}" if mine and theirs and theirs.cpu else "-"
        lines.append(f"{backend:8} {operation:32} {cells[0]:>23} {cells[1]:>21} {wall:>5} {cpu:>5}")
    print("\n".join(lines), file=file or sys.stdout, flush=True)


def compile_restique() -> None:
    """Bytecode for every module of the restique this script imports (the default --restique),
    before anything is timed; another --restique command keeps what its init compiled."""
    import compileall

    import restique

    compileall.compile_dir(str(Path(restique.__file__).parent), quiet=1)


def default_work() -> Path:
    """In memory when it has room: the servers' storage must not be the disk's speed."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 8 << 30:
        return shm
    return Path(tempfile.gettempdir())


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="scale 0.1: 3,000 files and 51 MiB")
    parser.add_argument("--scale", type=float, default=1.0, help="the bench's data scale (default 1)")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated subset of " + ",".join(BACKENDS))
    parser.add_argument("--ops", default=",".join(OPS), help="comma-separated subset of " + ",".join(OPS))
    parser.add_argument("--repeat", type=int, default=1, help="rounds per backend; cells are medians (default 1)")
    parser.add_argument("--work", type=Path, default=None, help="where repositories, caches and restores go")
    parser.add_argument("--bench", type=Path, default=PROJECT.parent / "shared" / "bench",
                        help="the shared bench's folder (its workloads.py makes the data)")
    parser.add_argument("--restique", default=f"{shlex.quote(sys.executable)} -m restique")
    parser.add_argument("--restic", default="restic")
    args = parser.parse_args(argv)
    if args.quick:
        args.scale = 0.1
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    if not set(args.ops) <= set(OPS) or not args.ops:
        parser.error(f"--ops: a comma-separated subset of {','.join(OPS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    wl = load_bench(args.bench)
    sources = prepare_data(wl, args.scale)
    expected = {name: digest(path, wl) for name, path in sources.items()}
    compile_restique()
    work = Path(tempfile.mkdtemp(prefix="backend-speed-", dir=args.work or default_work()))
    env = environment(work)
    os.environ.update(env)  # the key swap below opens the repositories in this process
    runner = Runner({"restique": shlex.split(args.restique), "restic": shlex.split(args.restic)}, env)
    rows, load_before, started = [], os.getloadavg(), time.monotonic()
    try:
        with ExitStack() as stack:
            backends = Servers(work, stack)
            for backend in args.backends:
                rounds = []
                for round_ in range(max(1, args.repeat)):
                    print(f"{backend}: measuring, round {round_ + 1}", file=sys.stderr)
                    target = backends.target(backend, round_)
                    rounds.append(measure(target, sources, expected, runner, work, wl, args.ops))
                    for folder in target.storage:
                        shutil.rmtree(folder, ignore_errors=True)
                done = [(backend, op, usages) for op, usages in median_rows(rounds)]
                print_table(done, file=sys.stderr)  # a run stopped part-way still shows what it measured
                rows += done
    finally:
        shutil.rmtree(work, ignore_errors=True)
    random_mib = sources["random file"].stat().st_size >> 20
    print(f"scale {args.scale:g}, {max(1, args.repeat)} round(s), medians: tree {sources['tree']},"
          f" random file {random_mib} MiB;"
          f" {time.monotonic() - started:.0f} s; load average {load_before[0]:.2f} before,"
          f" {os.getloadavg()[0]:.2f} after ({os.cpu_count()} cores)")
    print_table(rows)
    for failure in runner.failures:
        print(f"FAILED: {failure}")
    return 1 if runner.failures else 0


if __name__ == "__main__":
    sys.exit(main())
