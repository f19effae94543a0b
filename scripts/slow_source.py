#!/usr/bin/env python3
"""Slow sources (issue 13, "Scale"): does `backup --read-concurrency N` scale when every read
of the source costs time, as on a network filesystem?

A small FUSE pass-through shows a source folder read-only and sleeps DELAY ms in every read()
(and, with --meta-delay, in every lookup and getattr too; the kernel then caches no attribute,
so every stat reaches it). Reads are answered from a pool of threads, not by the event loop
(metadata without a delay is answered in the loop: a thread hop costs more than an lstat on
tmpfs); the server runs at a higher priority, as a remote server's latency does not depend
on this machine's load; files are opened with direct I/O so that neither tool is served from
the page cache (each read() of a tool is one request: 2 per small file, the data and the
end of file). The last column is the pass-through's own CPU time during the run. Then
FILES files of SIZE KiB (random, seeded) are backed up through it: by restique with
`--read-concurrency 1, 2, 4, 8, 16` and by restic 0.14 (which has no such flag: it reads with
2 workers), each into its own repository that already holds the data (`--force`: every file is
read again, nothing new is stored, so the read path is what is measured). Prints wall time,
CPU time, files/s and the speed-up over concurrency 1 (medians over --repeat runs).

    .venv/bin/python scripts/slow_source.py [--files 2000] [--size-kib 64] [--delay-ms 2]
        [--meta-delay] [--concurrency 1,2,4,8,16] [--repeat 1] [--work /dev/shm]

--delay-ms 0 shows what the pass-through costs by itself (it must not be the bottleneck).
`slow_source.py serve SOURCE MOUNTPOINT --delay-ms 2` only mounts, until unmounted or stopped.
"""
import argparse
import errno
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

READ_THREADS = 64


def serve(source: str, mountpoint: str, delay: float, meta_delay: bool) -> None:
    """Mount the pass-through and answer requests until it is unmounted or SIGTERM/SIGINT."""
    import pyfuse3
    import trio

    try:  # a remote server's latency does not depend on this machine's load
        os.nice(-10)
    except PermissionError:
        pass
    operations = _pass_through(pyfuse3, trio)(source, delay, meta_delay)
    pyfuse3.init(operations, mountpoint, {"ro", "fsname=slow-source", "default_permissions"})
    unmount = []

    async def main():
        async with trio.open_nursery() as nursery:
            async def stop_on_signal():
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        unmount.append(True)
                        nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            await pyfuse3.main(min_tasks=8, max_tasks=4 * READ_THREADS)
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        pyfuse3.close(unmount=bool(unmount))


def _pass_through(pyfuse3, trio):
    """The Operations class (defined here: pyfuse3 is imported only by the serving process)."""
    limiter = trio.CapacityLimiter(READ_THREADS)

    class PassThrough(pyfuse3.Operations):
        def __init__(self, source: str, delay: float, meta_delay: bool):
            super().__init__()
            self.delay, self.meta_delay = delay, meta_delay
            self.timeout = 0.0 if meta_delay else 300.0
            self.paths = {pyfuse3.ROOT_INODE: source}
            self.root_inode = os.lstat(source).st_ino

        async def _in_thread(self, fn, *args):
            try:
                return await trio.to_thread.run_sync(fn, *args, limiter=limiter)
            except OSError as exc:
                raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None

        def _stat(self, path: str):
            if self.meta_delay:
                time.sleep(self.delay)
            return os.lstat(path)

        def _attributes(self, st, path: str):
            attr = pyfuse3.EntryAttributes()
            inode = pyfuse3.ROOT_INODE if st.st_ino == self.root_inode else st.st_ino
            self.paths[inode] = path
            for name in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_rdev",
                         "st_blocks", "st_atime_ns", "st_mtime_ns", "st_ctime_ns"):
                setattr(attr, name, getattr(st, name))
            attr.st_ino, attr.st_blksize = inode, 4096
            attr.entry_timeout = attr.attr_timeout = self.timeout
            return attr

        async def _lstat(self, path: str):
            """Without a delay, in the loop: a thread hop would cost more than the lstat."""
            if self.meta_delay:
                return await self._in_thread(self._stat, path)
            try:
                return os.lstat(path)
            except OSError as exc:
                raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None

        async def lookup(self, parent_inode, name, ctx=None):
            path = os.path.join(self.paths[parent_inode], os.fsdecode(name))
            return self._attributes(await self._lstat(path), path)

        async def getattr(self, inode, ctx=None):
            path = self.paths[inode]
            return self._attributes(await self._lstat(path), path)

        async def readlink(self, inode, ctx):
            return os.fsencode(await self._in_thread(os.readlink, self.paths[inode]))

        async def opendir(self, inode, ctx):
            return inode

        def _listing(self, path: str):
            with os.scandir(path) as entries:
                return sorted((e.name, e.stat(follow_symlinks=False)) for e in entries)

        async def readdir(self, inode, start_id, token):
            path = self.paths[inode]
            listing = await self._in_thread(self._listing, path)
            for index in range(start_id, len(listing)):
                name, st = listing[index]
                child = os.path.join(path, name)
                if not pyfuse3.readdir_reply(token, os.fsencode(name), self._attributes(st, child), index + 1):
                    return

        async def open(self, inode, flags, ctx):
            if flags & (os.O_WRONLY | os.O_RDWR):
                raise pyfuse3.FUSEError(errno.EROFS)
            try:
                fd = os.open(self.paths[inode], os.O_RDONLY)
            except OSError as exc:
                raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
            return pyfuse3.FileInfo(fh=fd, direct_io=True)  # every read reaches read() below

        def _read(self, fd: int, offset: int, size: int) -> bytes:
            if self.delay:
                time.sleep(self.delay)
            return os.pread(fd, size, offset)

        async def read(self, fd, offset, size):
            return await self._in_thread(self._read, fd, offset, size)

        async def release(self, fd):
            os.close(fd)

    return PassThrough


class Mounted:
    """The pass-through in its own process, mounted at mountpoint while the block runs."""

    def __init__(self, source: Path, mountpoint: Path, delay_ms: float, meta_delay: bool):
        self.cmd = [sys.executable, __file__, "serve", str(source), str(mountpoint), "--delay-ms", str(delay_ms)]
        if meta_delay:
            self.cmd.append("--meta-delay")
        self.mountpoint = mountpoint

    def __enter__(self):
        self.process = subprocess.Popen(self.cmd)
        deadline = time.monotonic() + 20
        while not os.path.ismount(self.mountpoint):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the pass-through did not mount (exit {self.process.poll()})")
            time.sleep(0.05)
        return self

    def cpu_seconds(self) -> float:
        """The pass-through's own CPU time so far (to show it is not the bottleneck)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], check=False)


def make_source(folder: Path, files: int, size_kib: int) -> None:
    rng = random.Random(13)
    folder.mkdir(parents=True)
    for number in range(files):
        (folder / f"file-{number:05d}").write_bytes(rng.randbytes(size_kib << 10))


def timed(cmd: list, env: dict, figures: Path, mounted: Mounted):
    """(wall s, CPU s, the pass-through's CPU s) of one run, or a SystemExit with its error."""
    fs_cpu = mounted.cpu_seconds()
    proc = subprocess.run(["/usr/bin/time", "-q", "-f", "%e %U %S", "-o", str(figures), *cmd], env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[-4:])}: exit {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")
    wall, user, system = figures.read_text().split()
    return float(wall), float(user) + float(system), mounted.cpu_seconds() - fs_cpu


def measure(args, work: Path, mounted: Mounted) -> dict:
    """{row label: [(wall, cpu, fs cpu), ...]}: restique per concurrency and restic, runs interleaved."""
    from conftest import clean_env, restic_path, restique_cmd, run_program

    mounted_source = mounted.mountpoint
    env = clean_env(TMPDIR=str(work))
    tools = {"restique": restique_cmd(), "restic": [restic_path()]}
    rows = [(f"restique --read-concurrency {n}", "restique", ["--read-concurrency", str(n)])
            for n in args.concurrency] + [("restic 0.14 (2 readers)", "restic", [])]
    for tool, cmd in tools.items():  # each repository holds the data before the timed runs
        repo = work / f"repo-{tool}"
        run_program(cmd, "init", repo=repo, env=env)
        run_program(cmd, "backup", mounted_source, repo=repo, env=env)
    results = {label: [] for label, _, _ in rows}
    for turn in range(args.repeat):
        for label, tool, flags in (rows if turn % 2 == 0 else rows[::-1]):
            cmd = [*tools[tool], "-r", str(work / f"repo-{tool}"), "backup", "--force", *flags, str(mounted_source)]
            results[label].append(timed(cmd, env, work / "time.out", mounted))
    return results


def print_table(results: dict, files: int, size_kib: int) -> None:
    medians = {label: tuple(statistics.median(run[i] for run in runs) for i in range(3))
               for label, runs in results.items()}
    base = next(iter(medians.values()))[0]
    print(f"{'':34} {'wall s':>7} {'CPU s':>7} {'files/s':>8} {'MiB/s':>7} {'speed-up':>8} {'fs CPU s':>8}")
    for label, (wall, cpu, fs_cpu) in medians.items():
        print(f"{label:34} {wall:7.2f} {cpu:7.2f} {files / wall:8.0f} {files * size_kib / 1024 / wall:7.1f}"
              f" {base / wall:8.2f} {fs_cpu:8.2f}")


def parse_args(argv):
    if argv[:1] == ["serve"]:
        parser = argparse.ArgumentParser(prog="slow_source.py serve")
        parser.add_argument("command")
        parser.add_argument("source")
        parser.add_argument("mountpoint")
    else:
        parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
        parser.add_argument("--files", type=int, default=2000)
        parser.add_argument("--size-kib", type=int, default=64)
        parser.add_argument("--concurrency", default="1,2,4,8,16")
        parser.add_argument("--repeat", type=int, default=1)
        parser.add_argument("--work", default="/dev/shm")
    parser.add_argument("--delay-ms", type=float, default=2.0)
    parser.add_argument("--meta-delay", action="store_true", help="sleep in lookup and getattr too")
    args = parser.parse_args(argv)
    if hasattr(args, "concurrency"):
        args.concurrency = [int(n) for n in args.concurrency.split(",")]
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if getattr(args, "command", None) == "serve":
        serve(args.source, args.mountpoint, args.delay_ms / 1000, args.meta_delay)
        return 0
    work = Path(tempfile.mkdtemp(prefix="slow-source-", dir=args.work))
    try:
        source, mountpoint = work / "source", work / "mnt"
        make_source(source, args.files, args.size_kib)
        mountpoint.mkdir()
        with Mounted(source, mountpoint, args.delay_ms, args.meta_delay) as mounted:
            started, load = time.monotonic(), os.getloadavg()[0]
            results = measure(args, work, mounted)
        print(f"{args.files} files of {args.size_kib} KiB through a pass-through adding {args.delay_ms:g} ms"
              f" per read{' and per lookup/getattr' if args.meta_delay else ''}; {args.repeat} run(s) each,"
              f" medians; {time.monotonic() - started:.0f} s; load average {load:.2f} before,"
              f" {os.getloadavg()[0]:.2f} after ({os.cpu_count()} cores)")
        print_table(results, args.files, args.size_kib)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
