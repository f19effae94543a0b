#!/usr/bin/env python3
"""Source shapes at full size, backed up by restique and by restic 0.14 (issue 12, item 5):

- wide: one folder of ENTRIES empty files (default 1,000,000);
- long: a file whose path is PATH_BYTES long (default 4,000; nested 200-byte names, since one
  name is at most 255 bytes);
- deep: a tree DEPTH levels deep (default 500).

For each shape and each program: a fresh repository, one backup, its exit code, wall time and
peak RSS (the program's own, from wait4 in a small forking parent), and a check that the snapshot holds the shape (entries
listed, the leaf's content dumped by restic). Prints one line per run and exits 1 when a run
failed. tests/test_changing_sources.py runs the same shapes at sizes CI can afford.

    .venv/bin/python scripts/source_stress.py [--entries 1000000] [--depth 500] [--path-bytes 4000]
        [--shapes wide,long,deep] [--work-dir DIR] [--keep]

Work goes to /dev/shm when it exists (creating a million files on a disk takes minutes).
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from conftest import clean_env, restic_path, restique_cmd, run_restic  # noqa: E402
from test_changing_sources import run_measured  # noqa: E402

LEAF = b"the leaf of the shape\n"


def make_wide(base: Path, entries: int) -> Path:
    folder = base / "wide"
    folder.mkdir()
    flags = os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC
    for i in range(entries):
        os.close(os.open(folder / f"entry-{i:07d}", flags, 0o644))
    return folder


def make_long(base: Path, path_bytes: int) -> Path:
    root = base / "long"
    folder = root
    while len(bytes(folder)) + 201 < path_bytes - 20:
        folder = folder / ("x" * 200)
    leaf = folder / ("y" * (path_bytes - len(bytes(folder)) - 1))
    folder.mkdir(parents=True)
    leaf.write_bytes(LEAF)
    return root


def make_deep(base: Path, depth: int) -> Path:
    root = base / "deep"
    folder = root.joinpath(*["d"] * depth)
    folder.mkdir(parents=True)
    (folder / "leaf.txt").write_bytes(LEAF)
    return root


def leaf_of(root: Path) -> Path:
    """The one file below a long or deep shape."""
    for folder, _dirs, files in os.walk(root):
        if files:
            return Path(folder) / files[0]
    raise AssertionError(f"no file below {root}")


def check_snapshot(repo: Path, shape: str, root: Path, entries: int) -> str:
    """'' when the latest snapshot holds the shape, else what is wrong."""
    if shape == "wide":
        out = run_restic(repo, "ls", "--no-lock", "latest", str(root)).stdout
        listed = sum(line.startswith(bytes(root) + b"/") for line in out.splitlines())
        return "" if listed == entries else f"{listed} of {entries} entries listed"
    leaf = leaf_of(root)
    dumped = run_restic(repo, "dump", "--no-lock", "latest", str(leaf), check=False).stdout
    return "" if dumped == LEAF else f"the leaf {str(leaf)[:60]}... dumps as {dumped[:60]!r}"


def run_shape(base: Path, shape: str, root: Path, entries: int) -> bool:
    env = clean_env()
    env.pop("RESTIQUE_TEST_INSECURE_KEYS", None)  # measure what users run
    ok = True
    for name, program in (("restic", [restic_path()]), ("restique", restique_cmd())):
        repo = base / f"repo-{shape}-{name}"
        run_restic(repo, "init", env=env)
        proc, seconds, peak = run_measured(program + ["-r", str(repo), "backup", str(root)], env)
        code = proc.returncode
        tail = proc.stderr[-600:].decode(errors="replace").strip()
        problem = tail if code else check_snapshot(repo, shape, root, entries)
        print(f"{shape:5s} {name:9s} exit {code}  {seconds:8.1f} s  peak RSS {peak / 1024:8.1f} MiB"
              + (f"  FAILED: {problem}" if problem else ""), flush=True)
        ok = ok and not problem
        shutil.rmtree(repo, ignore_errors=True)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--depth", type=int, default=500)
    parser.add_argument("--path-bytes", type=int, default=4000)
    parser.add_argument("--shapes", default="wide,long,deep")
    parser.add_argument("--work-dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    parser.add_argument("--keep", action="store_true", help="leave the work folder behind")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="source-stress-", dir=args.work_dir))
    makers = {"wide": lambda: make_wide(base, args.entries), "long": lambda: make_long(base, args.path_bytes),
              "deep": lambda: make_deep(base, args.depth)}
    ok = True
    try:
        for shape in args.shapes.split(","):
            started = time.monotonic()
            root = makers[shape]()
            print(f"{shape:5s} made in {time.monotonic() - started:.1f} s: {root}"[:120], flush=True)
            ok = run_shape(base, shape, root, args.entries) and ok
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
