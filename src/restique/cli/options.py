"""Option groups that several commands share, each declared once (restic's AddFlags
groups, borg's define_*_group): a decorator adds the flags and hands the command one
parsed object."""
from __future__ import annotations

import functools
import sys
from typing import NamedTuple, Optional

import click


def _opt(*decls, **attrs):
    """One option of a group: click.option's arguments; the last declaration is its name."""
    return decls, attrs


def _group(options, build, name):
    """A decorator adding `options` to a command; their values reach it as one keyword
    argument `name`, built by build(**values)."""
    keys = [decls[-1] for decls, _ in options]

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            kwargs[name] = build(**{key: kwargs.pop(key) for key in keys})
            return fn(*args, **kwargs)

        for decls, attrs in reversed(options):
            wrapper = click.option(*decls, **attrs)(wrapper)
        return wrapper

    return decorate


# The parsed groups are NamedTuples, not dataclasses: every command imports this module, and
# a dataclass costs several times as much to define.

# --- a second repository: init --copy-chunker-params, later copy ---

class SourceRepository(NamedTuple):
    """--from-repo and the other flags of a source repository."""
    repo: Optional[str] = None
    repository_file: Optional[str] = None
    password_file: Optional[str] = None
    password_command: Optional[str] = None
    key_hint: Optional[str] = None
    password_env: str = "RESTIC_FROM_PASSWORD"
    password_prompt: str = "enter password for source repository: "

    @property
    def given(self) -> bool:
        return bool(self.repo or self.repository_file)

    def check(self) -> None:
        from ..errors import UsageError

        if not self.given:
            raise UsageError("Please specify a source repository location (--from-repo or --from-repository-file)")
        if self.repo and self.repository_file:
            raise UsageError("Options --from-repo and --from-repository-file are mutually exclusive, "
                             "please specify only one")


def _source(**values) -> SourceRepository:
    return SourceRepository(**{key[len("from_"):]: value for key, value in values.items()})


def from_repo_options(purpose: str):
    """--from-repo, --from-repository-file, --from-password-file/-command, --from-key-hint."""
    return _group([
        _opt("--from-repo", "from_repo", envvar="RESTIC_FROM_REPOSITORY", metavar="repository",
                     help=f"source repository {purpose} (default: $RESTIC_FROM_REPOSITORY)"),
        _opt("--from-repository-file", "from_repository_file", envvar="RESTIC_FROM_REPOSITORY_FILE", metavar="file",
                     help=f"file from which to read the source repository location {purpose} "
                          "(default: $RESTIC_FROM_REPOSITORY_FILE)"),
        _opt("--from-password-file", "from_password_file", envvar="RESTIC_FROM_PASSWORD_FILE", metavar="file",
                     help="file to read the source repository password from (default: $RESTIC_FROM_PASSWORD_FILE)"),
        _opt("--from-password-command", "from_password_command", envvar="RESTIC_FROM_PASSWORD_COMMAND",
                     metavar="command", help="shell command to obtain the source repository password from "
                                             "(default: $RESTIC_FROM_PASSWORD_COMMAND)"),
        _opt("--from-key-hint", "from_key_hint", envvar="RESTIC_FROM_KEY_HINT", metavar="key",
                     help="key ID of key to try decrypting the source repository first (default: $RESTIC_FROM_KEY_HINT)"),
    ], _source, "source")


# --- exclude / include patterns ---

class PatternOptions(NamedTuple):
    """--KIND, --iKIND, --KIND-file and --iKIND-file of one kind (exclude or include)."""
    kind: str
    patterns: tuple = ()
    ipatterns: tuple = ()
    files: tuple = ()
    ifiles: tuple = ()

    def __bool__(self) -> bool:
        return bool(self.patterns or self.ipatterns or self.files or self.ifiles)

    def pattern_lists(self) -> list:
        """One PatternList per case sensitivity, as restic keeps one filter for each, with
        restic's messages for unreadable files and malformed patterns."""
        from ..errors import UsageError
        from ..model.patterns import option_patterns, read_pattern_file

        def read(option, names):
            out = []
            for name in names:
                try:
                    out += read_pattern_file(name)
                except UsageError as exc:
                    raise UsageError(f'failed to read patterns from file "{name}": {exc}') from None
            if out:
                option_patterns(option, out)
            return out

        kind = self.kind
        patterns = list(self.patterns) + read(f"--{kind}-file", self.files)
        ipatterns = list(self.ipatterns) + read(f"--i{kind}-file", self.ifiles)
        lists = []
        if ipatterns:
            lists.append(option_patterns(f"--i{kind}", ipatterns, case_insensitive=True))
        if patterns:
            lists.append(option_patterns(f"--{kind}", patterns))
        return lists


def _pattern_options(kind: str):
    names = [f"{kind}_patterns", f"{kind}_ipatterns", f"{kind}_files", f"{kind}_ifiles"]

    def build(**values) -> PatternOptions:
        return PatternOptions(kind, *(values[name] for name in names))

    return _group([
        _opt(f"-{kind[0]}", f"--{kind}", names[0], multiple=True, metavar="pattern",
                     help=f"{kind} a pattern (can be specified multiple times)"),
        _opt(f"--i{kind}", names[1], multiple=True, metavar="pattern",
                     help=f"same as --{kind} pattern but ignores the casing of filenames"),
        _opt(f"--{kind}-file", names[2], multiple=True, metavar="file",
                     help=f"read {kind} patterns from a file (can be specified multiple times)"),
        _opt(f"--i{kind}-file", names[3], multiple=True, metavar="file",
                     help=f"same as --{kind}-file but ignores casing of filenames in patterns"),
    ], build, f"{kind}s")


exclude_options = _pattern_options("exclude")
include_options = _pattern_options("include")


# --- which snapshots: --host, --tag, --path ---

class SnapshotFilterOptions(NamedTuple):
    """--host, --tag and --path."""
    hosts: tuple = ()
    tags: tuple = ()
    paths: tuple = ()

    def filter(self):
        from ..model.snapshot_filter import SnapshotFilter

        return SnapshotFilter.from_options(self.hosts, self.tags, self.paths)


def snapshot_filter_options(single: bool = False):
    """The snapshot filter; single: the command takes one snapshot and the filter only
    narrows down "latest" (restic's initSingleSnapshotFilter)."""
    when = ', when snapshot ID "latest" is given' if single else ""
    return _group([
        _opt("-H", "--host", "filter_hosts", multiple=True, metavar="host", envvar="RESTIC_HOST",
                     help=f"only consider snapshots for this host{when} (can be specified multiple times) "
                          "(default: $RESTIC_HOST)"),
        _opt("--tag", "filter_tags", multiple=True, metavar="tag[,tag,...]",
                     help=f"only consider snapshots including tag[,tag,...]{when} (can be specified multiple times)"),
        _opt("--path", "filter_paths", multiple=True, metavar="path",
                     help=f"only consider snapshots including this (absolute) path{when} (can be specified "
                          "multiple times, snapshots must include all specified paths)"),
    ], lambda filter_hosts, filter_tags, filter_paths: SnapshotFilterOptions(filter_hosts, filter_tags, filter_paths),
        "snapshot_filter")


def snapshot_filter_options_without_host_shorthand():
    """The snapshot filter of a command that uses -H for something else (forget's
    --keep-hourly; restic's initMultiSnapshotFilter without the host shorthand)."""
    return _group([
        _opt("--host", "filter_hosts", multiple=True, metavar="host", envvar="RESTIC_HOST",
                     help="only consider snapshots for this host (can be specified multiple times) "
                          "(default: $RESTIC_HOST)"),
        _opt("--tag", "filter_tags", multiple=True, metavar="tag[,tag,...]",
                     help="only consider snapshots including tag[,tag,...] (can be specified multiple times)"),
        _opt("--path", "filter_paths", multiple=True, metavar="path",
                     help="only consider snapshots including this (absolute) path (can be specified "
                          "multiple times, snapshots must include all specified paths)"),
        # restic still takes forget's old spelling, deprecated
        _opt("--hostname", "filter_hostnames", multiple=True, metavar="hostname", hidden=True),
    ], _filter_with_hostnames, "snapshot_filter")


def _filter_with_hostnames(filter_hosts, filter_tags, filter_paths, filter_hostnames) -> SnapshotFilterOptions:
    if filter_hostnames:
        print("Flag --hostname has been deprecated, use --host", file=sys.stderr)
    return SnapshotFilterOptions(tuple(filter_hosts) + tuple(filter_hostnames), filter_tags, filter_paths)
