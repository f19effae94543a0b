#!/usr/bin/env python3
"""Many small files (issue 13, "Scale"): restique against restic 0.14 on a tree of FILES small
files (default 1,000,000) in memory.

The tree: FILES files of 8 bytes to 4 KiB (deterministic, each one different) in folders of
1,000, under four parts (`part-0` ... `part-3`) so that a quarter of the tree is one folder.
For each tool, the two taking turns at going first: init, first backup, unchanged re-backup,
`ls latest` (to /dev/null), restore into an empty folder in memory. Every step is timed with
/usr/bin/time: wall time, CPU time (user + sys) and peak RSS; the table shows each and the
ratio restique/restic. Then the memory-growth check: a first backup of a quarter of the tree
(`part-0`) into a fresh repository, so that (peak RSS of the whole - peak RSS of the quarter)
/ (three quarters of the files) is what each tool keeps per file (the quarter runs first;
every step's figures go to stderr as they come).

    .venv/bin/python scripts/many_files.py [--files 1000000] [--work /dev/shm] [--repeat 1]
        [--no-growth] [--keep]

Work goes to /dev/shm (or --work: mount a tmpfs there first, as root:
`mount -t tmpfs -o size=16g tmpfs DIR`). Both tools get the same cheap key parameters (the
test suite's), so neither pays half a second of scrypt per command.
"""
import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from conftest import clean_env, restic_path, restique_cmd, run_program  # noqa: E402

TOOLS = ("restique", "restic")
FILES_PER_FOLDER = 1000
PARTS = 4
STEPS = ("init", "backup", "re-backup", "ls", "restore")


def make_tree(root: Path, files: int) -> None:
    """FILES files in folders of FILES_PER_FOLDER spread over PARTS parts. Sizes 8 B..4 KiB (one
    page each on tmpfs), contents a slice of one seeded pool behind the file's number."""
    pool = random.Random(13).randbytes(1 << 16)
    folders = -(-files // FILES_PER_FOLDER)
    per_part = -(-folders // PARTS)
    flags = os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC
    number = 0
    for folder in range(folders):
        path = root / f"part-{folder // per_part}" / f"dir-{folder:04d}"
        path.mkdir(parents=True)
        for _ in range(min(FILES_PER_FOLDER, files - number)):
            size = 8 + (number * 2654435761) % 4089
            offset = (number * 40503) % (len(pool) - size)
            fd = os.open(path / f"file-{number:07d}", flags, 0o644)
            os.write(fd, b"%d\n" % number + pool[offset:offset + size])
            os.close(fd)
            number += 1


def count_files(root: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(root))


class Runner:
    """Runs one tool's command under /usr/bin/time: (wall s, CPU s, peak RSS MiB)."""

    def __init__(self, work: Path, env: dict):
        self.work, self.env = work, env
        self.commands = {"restique": restique_cmd(), "restic": [restic_path()]}
        self.failures = []

    def run(self, tool: str, repo: Path, *args, stdout=subprocess.DEVNULL):
        figures = self.work / "time.out"
        cmd = ["/usr/bin/time", "-q", "-f", "%e %U %S %M", "-o", str(figures), *self.commands[tool],
               "-r", str(repo), "--cache-dir", str(self.work / f"cache-{tool}"), *map(str, args)]
        proc = subprocess.run(cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
            self.failures.append(f"{tool} {' '.join(map(str, args[:2]))}: exit {proc.returncode}: {' | '.join(tail)}")
            return None
        wall, user, system, rss_kib = figures.read_text().split()
        return float(wall), float(user) + float(system), int(rss_kib) / 1024

    def init(self, tool: str, repo: Path) -> None:
        """restique's init makes a cheap key here (the suite's variable); restic's key is
        replaced by one with the same parameters, as the suite does."""
        if tool == "restique":
            self.run(tool, repo, "init")
        else:
            run_program(self.commands[tool], "init", repo=repo, env=self.env)


def measure_round(runner: Runner, work: Path, source: Path, files: int, turn: int) -> dict:
    """{step: {tool: figures}} for one round of every step; the first tool alternates per step."""
    repos = {tool: work / f"repo-{tool}" for tool in TOOLS}
    results = {}
    for index, step in enumerate(STEPS):
        order = TOOLS if (turn + index) % 2 == 0 else TOOLS[::-1]
        results[step] = {}
        for tool in order:
            results[step][tool] = figures = run_step(runner, tool, step, repos[tool], work, source, files)
            shown = "FAILED" if figures is None else "%.2f s wall, %.2f s CPU, %.1f MiB" % figures
            print(f"  round {turn + 1} {step:9} {tool:9} {shown} (load average {os.getloadavg()[0]:.1f})",
                  file=sys.stderr, flush=True)  # wall times mean little without the load they met
    for tool in TOOLS:
        shutil.rmtree(repos[tool], ignore_errors=True)
        shutil.rmtree(work / f"cache-{tool}", ignore_errors=True)
    return results


def run_step(runner: Runner, tool: str, step: str, repo: Path, work: Path, source: Path, files: int):
    if step == "init":
        started, cpu = time.monotonic(), os.times()
        runner.init(tool, repo)
        after = os.times()
        return time.monotonic() - started, after.children_user + after.children_system \
            - cpu.children_user - cpu.children_system, 0.0
    if step in ("backup", "re-backup"):
        return runner.run(tool, repo, "backup", source)
    if step == "ls":
        return runner.run(tool, repo, "ls", "latest")
    target = work / f"restored-{tool}"
    try:
        figures = runner.run(tool, repo, "restore", "latest", "--target", target)
        restored = count_files(target / str(source).lstrip("/"))
        if figures is not None and restored != files:
            runner.failures.append(f"{tool} restore: {restored} of {files} files")
        return figures
    finally:
        shutil.rmtree(target, ignore_errors=True)


def quarter_backups(runner: Runner, work: Path, source: Path) -> dict:
    """{tool: (files, peak RSS MiB)} of a first backup of a quarter of the tree (`part-0`), to
    set against the whole tree's first backup: what each tool keeps per file."""
    quarter = source / "part-0"
    files = count_files(quarter)
    out = {}
    for tool in TOOLS:
        repo = work / f"repo-quarter-{tool}"
        runner.init(tool, repo)
        figures = runner.run(tool, repo, "backup", quarter)
        shutil.rmtree(repo, ignore_errors=True)
        shutil.rmtree(work / f"cache-{tool}", ignore_errors=True)
        print(f"  quarter backup {tool:9} {figures}", file=sys.stderr, flush=True)
        if figures is not None:
            out[tool] = (files, figures[2])
    return out


def median_figures(rounds: list, step: str, tool: str):
    runs = [r[step][tool] for r in rounds if r[step][tool] is not None]
    if not runs:
        return None
    return tuple(statistics.median(run[i] for run in runs) for i in range(3))


def print_table(rounds: list) -> None:
    print(f"{'step':10} {'tool':9} {'wall s':>8} {'CPU s':>8} {'RSS MiB':>8}   restique/restic: wall  CPU   RSS")
    for step in STEPS:
        mine, theirs = (median_figures(rounds, step, tool) for tool in TOOLS)
        for tool, figures in zip(TOOLS, (mine, theirs)):
            rss = f"{figures[2]:8.1f}" if figures and step != "init" else "       -"  # init: key swap in-process
            cells = "  FAILED" if figures is None else f"{figures[0]:8.2f} {figures[1]:8.2f} {rss}"
            ratios = ""
            if tool == "restic" and mine and theirs:
                ratios = "   " + " ".join(f"{a / b:5.2f}" if b else "    -" for a, b in zip(mine, theirs))
            print(f"{step:10} {tool:9} {cells}{ratios}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--work", default="/dev/shm", help="a folder on a tmpfs")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every step; medians are shown")
    parser.add_argument("--no-growth", action="store_true", help="skip the memory-growth check")
    parser.add_argument("--keep", action="store_true", help="leave the work folder behind")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="many-files-", dir=args.work))
    env = clean_env(TMPDIR=str(work))
    runner = Runner(work, env)
    try:
        started = time.monotonic()
        source = work / "source"
        make_tree(source, args.files)
        print(f"{args.files} files made in {time.monotonic() - started:.0f} s in {source};"
              f" load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)", flush=True)
        quarters = {} if args.no_growth else quarter_backups(runner, work, source)
        rounds = [measure_round(runner, work, source, args.files, turn) for turn in range(args.repeat)]
        print_table(rounds)
        for tool, (files, quarter_rss) in quarters.items():
            full_rss = (median_figures(rounds, "backup", tool) or (0, 0, None))[2]
            if full_rss is not None:
                per_file = (full_rss - quarter_rss) * (1 << 20) / (args.files - files)
                print(f"memory growth {tool:9}: first backup of {files} files {quarter_rss:.1f} MiB, of"
                      f" {args.files} files {full_rss:.1f} MiB: {per_file:.0f} bytes per file")
        print(f"load average after: {os.getloadavg()[0]:.2f}; {time.monotonic() - started:.0f} s in all")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    for failure in runner.failures:
        print(f"FAILED: {failure}")
    return 1 if runner.failures else 0


if __name__ == "__main__":
    sys.exit(main())
