#!/usr/bin/env python3
"""Fuzz every parser of repository data with many examples (tests/test_fuzz_parsers.py runs
the same parsers briefly in CI).

    .venv/bin/python scripts/fuzz_parsers.py [--examples 100000] [--parser NAME ...] [--seed N]

Examples come from a seeded random generator (the tests draw the same kinds of examples
through hypothesis, which shrinks failures but costs far more per example). Prints, per parser: examples run, failing examples, and each distinct failure (exception type
and where it was raised) with its first example. A failure is anything but a RestiqueError,
a malformed result, or an example running past the hang limit. Needs the real restic (the
seeds include a repository it writes). Exit status 1 when any parser failed.
"""
import argparse
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

import test_fuzz_parsers as fuzz  # noqa: E402  (needs the tests folder on sys.path)


def _where(exc: BaseException) -> str:
    """The innermost frame in restique's own code (else the innermost one)."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if "/restique/" in f.filename] or frames
    last = mine[-1] if mine else None
    return f"{Path(last.filename).name}:{last.lineno}" if last else "?"


def fuzz_one(name: str, seeds, examples: int, seed: int) -> int:
    failures = {}
    failing = 0

    def record(example, exc):
        nonlocal failing
        failing += 1
        kind = (type(exc).__name__, _where(exc))
        failures.setdefault(kind, (str(exc)[:200], repr(example)[:200]))

    start = time.monotonic()
    fuzz.run_parser_randomly(name, seeds, examples, random.Random(f"{seed}/{name}"), record)
    seconds = time.monotonic() - start
    print(f"{name:12} examples {examples:8d}  failing {failing:6d}  distinct {len(failures):3d}  ({seconds:.0f} s)",
          flush=True)
    for (kind, where), (message, example) in sorted(failures.items()):
        print(f"    {kind} at {where}: {message}\n        example: {example}", flush=True)
    return failing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=100_000, help="examples per parser")
    parser.add_argument("--parser", action="append", choices=sorted(fuzz.PARSERS),
                        help="only this parser (repeatable); default all")
    parser.add_argument("--seed", type=int, default=0, help="random seed (the same seed, the same examples)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fuzz-seeds-") as workdir:
        seeds = fuzz.build_seeds(Path(workdir))
        total = 0
        for name in args.parser or sorted(fuzz.PARSERS):
            total += fuzz_one(name, seeds, args.examples, args.seed)
    print(f"failing examples in all: {total}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
