"""Checking a repository for damage, as `restic check` does.

Stages, each reported to the caller before it runs: load the index files (duplicates and
disagreements between them), compare the packs the index lists with the pack files present
(missing, wrong size, not indexed), walk every tree reachable from the snapshots (every
referenced blob indexed), and optionally read pack files (every blob decrypts and hashes to
its id, the pack hashes to its name, the header agrees with the index).

The library never prints: ``check(repo, options, report)`` passes each finding (a `Problem`)
and each stage to a `CheckReport` and returns a `CheckSummary`. The messages are current
restic's, so scripts that read them keep working.
"""
import re
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

from ...errors import UsageError
from ...model.snapshot_filter import SnapshotFilter

# restic selects a --read-data-subset n/t group by the first byte of the pack id
MAX_SUBSET_GROUPS = 256

_SUBSET_HELP = "check flag --read-data-subset has invalid value, please see documentation"


@dataclass(frozen=True)
class ReadDataSubset:
    """A parsed --read-data-subset: kind is "group" (n of t), "percent" or "size" (bytes)."""

    kind: str
    group: int = 0
    groups: int = 0
    percent: float = 0.0
    size: int = 0


def parse_read_data_subset(text: str) -> ReadDataSubset:
    """'n/t', 'x%' / 'x.y%', or a size with an optional b/k/m/g/t suffix (1024-based);
    UsageError with restic's words when the value is out of range or unreadable."""
    if re.fullmatch(r"[0-9]+(/[0-9]+)*", text):
        parts = [int(p) for p in text.split("/")]
        if len(parts) != 2:
            raise UsageError(_SUBSET_HELP)
        n, t = parts
        if n == 0 or t == 0 or n > t:
            raise UsageError("check flag --read-data-subset=n/t values must be positive integers, "
                             "and n <= t, e.g. --read-data-subset=1/2")
        if t > MAX_SUBSET_GROUPS:
            raise UsageError(f"check flag --read-data-subset=n/t t must be at most {MAX_SUBSET_GROUPS}")
        return ReadDataSubset("group", group=n, groups=t)
    if text.endswith("%"):
        number = text[:-1]
        if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", number):
            raise UsageError(_SUBSET_HELP)
        percent = float(number)
        if not 0.0 < percent <= 100.0:
            raise UsageError("check flag --read-data-subset=x% x must be above 0.0% and at most 100.0%")
        return ReadDataSubset("percent", percent=percent)
    size = _parse_size(text)
    if size is None:
        raise UsageError(_SUBSET_HELP)
    if size <= 0:
        raise UsageError("check flag --read-data-subset=n n must be above 0")
    return ReadDataSubset("size", size=size)


_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _parse_size(text: str) -> Optional[int]:
    """restic's ui.ParseBytes: an integer, optionally followed by one unit letter."""
    unit = _UNITS.get(text[-1:].lower())
    number = text[:-1] if unit else text
    if not re.fullmatch(r"[+-]?[0-9]+", number):
        return None
    value = int(number) * (unit or 1)
    return value if value < 1 << 63 else None


@dataclass
class CheckOptions:
    """read_data: read every pack; read_data_subset: read some ('n/t', 'x%', a size).
    snapshot_ids / filter: check only these snapshots (and read only their packs)."""

    read_data: bool = False
    read_data_subset: Optional[str] = None
    snapshot_ids: Sequence[str] = ()
    filter: SnapshotFilter = field(default_factory=SnapshotFilter)

    def validate(self) -> Optional[ReadDataSubset]:
        if self.read_data and self.read_data_subset:
            raise UsageError("check flags --read-data and --read-data-subset cannot be used together")
        return parse_read_data_subset(self.read_data_subset) if self.read_data_subset else None

    @property
    def filtered(self) -> bool:
        return bool(self.snapshot_ids) or not self.filter.empty()


@dataclass
class Problem:
    """One finding. kind names what is wrong (see below); message is restic's text for it;
    object_id the damaged object (pack, index file, tree or snapshot id); details the
    individual errors of a tree or pack. is_error False: a hint (exit status stays 0).

    kinds: index_damaged, pack_indexes_differ, duplicate_pack (hint), mixed_pack (hint),
    pack_missing, pack_size, pack_orphaned (hint), tree, snapshot, pack_data, pack_unreadable.
    """

    kind: str
    message: str
    object_id: str = ""
    is_error: bool = True
    details: List[str] = field(default_factory=list)


@dataclass
class CheckSummary:
    """What was found; to_json() is current restic's summary object."""

    num_errors: int = 0
    errors_found: bool = False
    broken_packs: List[str] = field(default_factory=list)  # to remove with `repair packs`
    broken_snapshots: List[str] = field(default_factory=list)
    orphaned_packs: int = 0
    index_damaged: bool = False
    suggest_repair_index: bool = False
    suggest_prune: bool = False
    mixed_packs: bool = False
    snapshots_checked: int = 0
    packs_read: int = 0

    def to_json(self) -> dict:
        return {"message_type": "summary", "num_errors": self.num_errors,
                "broken_packs": list(self.broken_packs) or None,
                "suggest_repair_index": self.suggest_repair_index, "suggest_prune": self.suggest_prune}


class CheckReport:
    """Receives what check() finds while it runs; every method is optional to override."""

    def stage(self, name: str, **info) -> None:
        """name: load_indexes, packs, structure, read_data (info: subset, selected, total,
        filtered, subset_size, percent)."""

    def problem(self, problem: Problem) -> None:
        pass

    def progress(self, unit: str, done: int, total: int, elapsed: float, finished: bool = False) -> None:
        """unit: snapshots or packs."""


@dataclass
class _Tally:
    """Counts problems into the summary as they pass to the report."""

    summary: CheckSummary
    report: CheckReport

    def __call__(self, problem: Problem) -> None:
        s = self.summary
        if problem.is_error:
            s.errors_found = True
            s.num_errors += max(1, len(problem.details)) if problem.kind == "tree" else 1
        if problem.kind in ("pack_missing", "pack_size", "pack_data", "pack_indexes_differ") \
                and problem.object_id not in s.broken_packs:
            s.broken_packs.append(problem.object_id)
        elif problem.kind == "snapshot":
            s.broken_snapshots.append(problem.object_id)
        elif problem.kind == "duplicate_pack":
            s.suggest_repair_index = True
        elif problem.kind == "mixed_pack":
            s.suggest_prune = s.mixed_packs = True
        elif problem.kind == "pack_orphaned":
            s.orphaned_packs += 1
            s.suggest_prune = True
        elif problem.kind == "index_damaged":
            s.index_damaged = s.suggest_repair_index = True
        self.report.problem(problem)


def check(repo, options: CheckOptions, report: Optional[CheckReport] = None) -> CheckSummary:
    """Check repo (locked by the caller) and return the summary; findings go to report."""
    from . import structure

    subset = options.validate()
    report = report or CheckReport()
    summary = CheckSummary()
    tally = _Tally(summary, report)

    snapshot_ids = repo.list_ids("snapshot")
    report.stage("load_indexes")
    indexed = structure.load_indexes(repo, tally)
    if summary.index_damaged:
        return summary

    report.stage("packs")
    pack_sizes = structure.check_packs(repo, indexed, tally)

    report.stage("structure")
    used_blobs, summary.snapshots_checked = structure.check_snapshots(
        repo, options, snapshot_ids, tally, _counter(report, "snapshots"), indexed)

    if options.read_data or subset:
        from . import read_data  # its thread pool and logging only when data is read

        candidates = read_data.packs_to_read(pack_sizes, indexed, used_blobs)
        selected, info = read_data.select_packs(candidates, subset)
        report.stage("read_data", filtered=options.filtered, **info)
        read_data.read_packs(repo, indexed, selected, tally, _counter(report, "packs"))
        summary.packs_read = len(selected)
    return summary


def _counter(report: CheckReport, unit: str) -> Callable[[int, int, bool], None]:
    """A progress callback (done, total, finished) that adds the elapsed time."""
    start = time.monotonic()
    return lambda done, total, finished=False: report.progress(unit, done, total, time.monotonic() - start, finished)
