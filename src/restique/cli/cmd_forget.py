"""restique forget: remove snapshots named by ID, or those a keep policy does not keep in each
group. Text as restic 0.14 prints it; flags, refusals and --json as current restic has them.

`--prune` runs prune (with prune's flags, shared from cmd_prune) on the same open, locked
repository when snapshots were removed, as restic does.
"""
import re
import sys
import time

import click

from ..errors import UsageError
from .cmd_prune import prune_flags, run_prune
from .options import snapshot_filter_options_without_host_shorthand

_COUNT_FLAGS = (("last", "-l", "--keep-last"), ("hourly", "-H", "--keep-hourly"),
                ("daily", "-d", "--keep-daily"), ("weekly", "-w", "--keep-weekly"),
                ("monthly", "-m", "--keep-monthly"), ("yearly", "-y", "--keep-yearly"))
_WITHIN_FLAGS = (("within", ""), ("within_hourly", "-hourly"), ("within_daily", "-daily"),
                 ("within_weekly", "-weekly"), ("within_monthly", "-monthly"), ("within_yearly", "-yearly"))


def _policy_count(flag: str, text: str) -> int:
    """A --keep-* count: a number, or `unlimited` (-1, as is -1 itself)."""
    if text == "unlimited":
        return -1
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise click.UsageError(f'invalid argument "{text}" for "{flag}" flag: '
                               f'strconv.ParseInt: parsing "{text}": invalid syntax')
    value = int(text)
    if not -(1 << 63) <= value < (1 << 63):
        raise click.UsageError(f'invalid argument "{text}" for "{flag}" flag: '
                               f'strconv.ParseInt: parsing "{text}": value out of range')
    if value < -1:
        raise UsageError("negative values other than -1 are not allowed for --keep-*")
    return value


def _duration(flag: str, text: str):
    from ..model.keep_policy import Duration

    try:
        duration = Duration.parse(text)
    except ValueError as exc:
        raise click.UsageError(f'invalid argument "{text}" for "{flag}" flag: {exc}') from None
    if duration.has_negative():
        raise UsageError("durations containing negative values are not allowed for --keep-within*")
    return duration


def keep_policy_from_flags(flags: dict, keep_tags):
    """The keep policy of forget's --keep-* values (click's parameter names, keep_daily=...);
    also what a profile's forget section gives `run`."""
    counts = {name: flags.get(f"keep_{name}") for name, _, _ in _COUNT_FLAGS}
    withins = {name: flags.get(f"keep_{name}") for name, _ in _WITHIN_FLAGS}
    return _build_policy(counts, withins, keep_tags)


def _build_policy(counts: dict, withins: dict, keep_tags):
    from ..model.keep_policy import KeepPolicy
    from ..model.snapshot_filter import parse_tag_list

    values = {name: _policy_count(f"{short}, {long}", counts[name] or "0") for name, short, long in _COUNT_FLAGS}
    values.update({name: _duration(f"--keep-within{suffix}", withins[name] or "")
                   for name, suffix in _WITHIN_FLAGS})
    return KeepPolicy(tags=tuple(tuple(parse_tag_list(t)) for t in keep_tags), **values)


def _policy_options(fn):
    """The --keep-N counts, then the --keep-within durations, in restic's order."""
    options = []
    for name, short, long in _COUNT_FLAGS:
        what = "" if name == "last" else f" {name}"
        options.append(click.option(short, long, f"keep_{name}", metavar="n",
                                    help=f"keep the last n{what} snapshots (use 'unlimited' to keep all{what} snapshots)"))
    for name, suffix in _WITHIN_FLAGS:
        what = f"{suffix[1:]} snapshots" if suffix else "snapshots"
        options.append(click.option(f"--keep-within{suffix}", f"keep_{name}", metavar="duration",
                                    help=f"keep {what} that are newer than duration (eg. 1y5m7d2h) "
                                         "relative to the latest snapshot"))
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.command("forget")
@_policy_options
@click.option("--keep-tag", "keep_tags", multiple=True, metavar="taglist",
              help="keep snapshots with this taglist (can be specified multiple times)")
@click.option("--unsafe-allow-remove-all", is_flag=True, help="allow deleting all snapshots of a snapshot group")
@snapshot_filter_options_without_host_shorthand()
@click.option("-c", "--compact", is_flag=True, help="use compact output format")
@click.option("-g", "--group-by", default="host,paths", metavar="group",
              help="group snapshots by host, paths and/or tags, separated by comma (disable grouping with '')")
@click.option("-n", "--dry-run", is_flag=True, help="do not delete anything, just print what would be done")
@click.option("--prune", is_flag=True, help="automatically run the 'prune' command if snapshots have been removed")
@prune_flags
@click.argument("snapshot_ids", nargs=-1)
@click.pass_obj
def forget(opts, snapshot_filter, keep_tags, unsafe_allow_remove_all, compact, group_by, dry_run,
           prune, prune_options, snapshot_ids, **keep):
    """Remove snapshots from the repository.

    The "forget" command removes snapshots according to a policy. All snapshots are
    first divided into groups according to "--group-by", and after that the policy
    specified by the "--keep-*" options is applied to each group individually.
    If there are not enough snapshots to keep one for each duration related
    "--keep-{within-,}*" option, the oldest snapshot in the group is kept
    additionally.

    Please note that this command really only deletes the snapshot object in the
    repository, which is a reference to data stored there. In order to remove the
    unreferenced data after "forget" was run successfully, see the "prune" command.
    """
    from ..model.snapshot_group import GroupBy
    from ..operations.forget import ForgetOptions

    options = ForgetOptions(
        policy=keep_policy_from_flags(keep, keep_tags),
        group_by=GroupBy.parse(group_by),
        filter=snapshot_filter.filter(),
        snapshot_ids=list(snapshot_ids),
        dry_run=dry_run,
        unsafe_allow_remove_all=unsafe_allow_remove_all,
    )
    if prune:  # prune's flags are checked before anything is removed
        prune_options.dry_run = dry_run
        prune_options.validate()
    result = run_forget(opts, options, compact)
    if prune and result.remove_ids:
        if not opts.json and not opts.quiet:
            # restic 0.14's words, in a dry run too
            print(f"{len(result.remove_ids)} snapshots have been removed, running prune", flush=True)
        run_prune(opts, opts.repository, prune_options, ignore_snapshots=result.remove_ids)


def run_forget(opts, options, compact: bool = False):
    """Open the repository exclusively (none for --dry-run with --no-lock), forget, print as
    restic does; returns the ForgetResult, with the repository still open for a prune."""
    from ..operations.forget import forget as forget_snapshots

    if opts.no_lock and not options.dry_run:
        raise UsageError("--no-lock is only applicable in combination with --dry-run for forget command")
    repo = opts.open_exclusively(dry_run=options.dry_run and opts.no_lock)
    printer = _ForgetPrinter(opts, options.policy, compact, bool(options.snapshot_ids))
    result = forget_snapshots(repo, options, warn=_warn, on_plan=printer.plan, on_removed=printer.removed)
    printer.finish(result)
    return result


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


class _ForgetPrinter:
    """restic 0.14's text: the policy, a keep and a remove table per group (group headers
    with -v), then the removal's counter line or, in a dry run, the IDs it would remove;
    with --json only the groups, printed at the end."""

    def __init__(self, opts, policy, compact: bool, by_id: bool):
        self.opts = opts
        self.policy = policy
        self.compact = compact
        self.by_id = by_id
        self.started = 0.0
        self.to_remove = 0
        self.processed = 0

    @property
    def text(self) -> bool:
        return not self.opts.json

    def plan(self, result) -> None:
        """Before anything is removed: the policy and each group's tables."""
        if self.text and not self.opts.quiet:
            if not self.by_id:
                print(f"Applying Policy: {self.policy}")
            sys.stdout.write("".join(self._group_tables(group) for group in result.groups))
        if result.dry_run and result.remove_ids and self.text:
            ids = " ".join(sid[:8] for sid in result.remove_ids)
            print(f"Would have removed the following snapshots:\n{{{ids}}}\n")
        sys.stdout.flush()
        self.started = time.monotonic()
        self.to_remove = 0 if result.dry_run else len(result.remove_ids)

    def _group_tables(self, group) -> str:
        from .output import format_snapshots_table

        out = []
        header = group.key.header() if self.opts.verbose >= 1 else None
        if header is not None:
            out.append(header + "\n")
        if group.keep:
            out.append(f"keep {len(group.keep)} snapshots:\n")
            out.append(format_snapshots_table(group.keep, self.compact, [r.matches for r in group.reasons]) + "\n")
        if group.remove:
            out.append(f"remove {len(group.remove)} snapshots:\n")
            out.append(format_snapshots_table(group.remove, self.compact) + "\n")
        return "".join(out)

    def removed(self, snapshot_id: str, error) -> None:
        """After each removal; the counter's final line after the last one."""
        from .fmt import progress_counter_line

        self.processed += 1
        handle = f"<snapshot/{snapshot_id[:10]}>"  # restic 0.14 names a file by its Handle
        if error is not None and self.text:
            print(f"unable to remove {handle} from the repository", file=sys.stderr)
        elif error is None and self.text and self.opts.verbose > 2:
            print(f"removed {handle}")
        if self.processed == self.to_remove and self.text and not self.opts.quiet:
            line = progress_counter_line(time.monotonic() - self.started, self.processed, self.to_remove, "files deleted")
            print(line + "\n", flush=True)

    def finish(self, result) -> None:
        from .output import print_json

        if self.opts.json and result.groups:
            print_json([group.to_json() for group in result.groups])
