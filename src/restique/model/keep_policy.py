"""forget's keep policy: which snapshots of one group to keep, and why (restic's ExpirePolicy
and ApplyPolicy, as current restic applies them). Pure functions over snapshots.

Calendar buckets (hour, day, ISO week, month, year) are read from each snapshot's own wall
clock, the UTC offset stored with its time, as Go's time methods do on a parsed time. The
`--keep-within*` thresholds count back from the newest snapshot that is not in the future,
calendar-wise for years, months and days (Go's AddDate: 31 March minus one month is 3 March)
and then by whole hours.

Current restic's additions to restic 0.14's rules are followed: a count of -1 keeps every
bucket ("unlimited"), and while a count is left (or a --keep-within-* range reaches it) the
oldest snapshot of the group is kept too, its reason prefixed with "oldest".
"""
import re
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

from .snapshot import Snapshot

UNLIMITED = -1
_NS = 1_000_000_000


# --- durations: 1y5m7d2h ------------------------------------------------------------------

@dataclass(frozen=True)
class Duration:
    """restic's Duration: calendar years, months, days and hours."""
    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    @classmethod
    def parse(cls, text: str) -> "Duration":
        """`6y5m234d37h` (any order, a unit given twice counts once: the last); ValueError
        with restic's message otherwise."""
        values = {}
        rest = (text or "").strip()
        while rest:
            m = re.match(r"(-?)([0-9]*)", rest)
            if not m.group(2):
                raise ValueError("no number found")
            number = int(m.group(2)) * (-1 if m.group(1) else 1)
            rest = rest[m.end():]
            if not rest:
                raise ValueError(f"no unit found after number {number}")
            unit = rest[0]
            if unit not in "ymdh":
                raise ValueError(f"invalid unit {_go_quote_byte(rest)} found after number {number}")
            values[unit] = number
            rest = rest[1:]
        return cls(values.get("y", 0), values.get("m", 0), values.get("d", 0), values.get("h", 0))

    def is_zero(self) -> bool:
        return not (self.years or self.months or self.days or self.hours)

    def has_negative(self) -> bool:
        return min(self.years, self.months, self.days, self.hours) < 0

    def __str__(self) -> str:
        return "".join(f"{n}{unit}" for n, unit in
                       ((self.years, "y"), (self.months, "m"), (self.days, "d"), (self.hours, "h")) if n)


def _go_quote_byte(text: str) -> str:
    """Go's %q of the first byte of text, as restic names a bad unit."""
    byte = text.encode("utf-8", "surrogateescape")[0]
    if 0x20 <= byte < 0x7F:
        return "'\\''" if byte == 0x27 else "'\\\\'" if byte == 0x5C else f"'{chr(byte)}'"
    if byte >= 0xA0:
        return f"'{chr(byte)}'"
    named = {7: "a", 8: "b", 9: "t", 10: "n", 11: "v", 12: "f", 13: "r"}
    return f"'\\{named[byte]}'" if byte in named else f"'\\x{byte:02x}'"


# --- the policy ---------------------------------------------------------------------------

# (attribute, bucket name, reason) of the counted rules, in restic's order
COUNT_RULES = (("last", "latest", "last snapshot"), ("hourly", "hourly", "hourly snapshot"),
               ("daily", "daily", "daily snapshot"), ("weekly", "weekly", "weekly snapshot"),
               ("monthly", "monthly", "monthly snapshot"), ("yearly", "yearly", "yearly snapshot"))
WITHIN_RULES = (("within_hourly", "hourly"), ("within_daily", "daily"), ("within_weekly", "weekly"),
                ("within_monthly", "monthly"), ("within_yearly", "yearly"))


@dataclass(frozen=True)
class KeepPolicy:
    """Counts are how many buckets to keep (0: rule off, -1: all); durations count back from
    the newest snapshot; tags is a list of tag lists (a snapshot having every tag of one
    list is kept; the list [''] means untagged)."""
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: Duration = Duration()
    within_hourly: Duration = Duration()
    within_daily: Duration = Duration()
    within_weekly: Duration = Duration()
    within_monthly: Duration = Duration()
    within_yearly: Duration = Duration()
    tags: Tuple[Tuple[str, ...], ...] = ()

    def empty(self) -> bool:
        return (not self.tags and all(getattr(self, name) == 0 for name, _, _ in COUNT_RULES)
                and self.within.is_zero() and all(getattr(self, name).is_zero() for name, _ in WITHIN_RULES))

    def __str__(self) -> str:
        """restic's description: `keep 2 latest, 3 daily snapshots, daily snapshots within 7d
        and all snapshots with tags [[keep]] and all snapshots within 2d of the newest`."""
        counts = []
        for name, descr, _ in COUNT_RULES:
            n = getattr(self, name)
            if n > 0:
                counts.append(f"{n} {descr}")
            elif n == UNLIMITED:
                counts.append(f"all {descr}")
        text = f"{', '.join(counts)} snapshots" if counts else ""
        withins = [f"{descr} snapshots within {getattr(self, name)}"
                   for name, descr in WITHIN_RULES if not getattr(self, name).is_zero()]
        if withins:
            text += (", " if text else "") + ", ".join(withins)
        if self.tags:
            text += (" and " if text else "") + f"all snapshots with tags {format_tag_lists(self.tags)}"
        if not self.within.is_zero():
            text += (" and " if text else "") + f"all snapshots within {self.within} of the newest"
        return "keep " + text if text else "remove"


def format_tag_list(tags: Sequence[str]) -> str:
    return "[" + ", ".join(tags) + "]"


def format_tag_lists(lists: Sequence[Sequence[str]]) -> str:
    return "[" + " ".join(format_tag_list(tags) for tags in lists) + "]"


@dataclass
class KeepReason:
    """Why a snapshot is kept: restic's match texts, and the counts left after it
    (-1 for unlimited rules; the names of COUNT_RULES)."""
    snapshot: Snapshot
    matches: List[str]
    counters: dict = field(default_factory=dict)


@dataclass
class PolicyResult:
    """keep and remove newest first; reasons[i] belongs to keep[i]."""
    keep: List[Snapshot]
    remove: List[Snapshot]
    reasons: List[KeepReason]


# --- calendar arithmetic on a snapshot's wall clock (any year, no datetime limits) ---------

def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _civil_from_days(z: int) -> Tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def _wall(sn: Snapshot) -> Tuple[int, int]:
    """(days since the epoch, seconds into the day) of the snapshot's own wall clock."""
    return divmod(sn.time.unix_ns // _NS + sn.time.offset, 86400)


def _iso_week(days: int) -> Tuple[int, int]:
    thursday = days - (days + 3) % 7 + 3  # 1970-01-01 was a Thursday; weeks start on Monday
    year = _civil_from_days(thursday)[0]
    return year, (thursday - _days_from_civil(year, 1, 1)) // 7 + 1


def _hour(sn, nr):
    days, secs = _wall(sn)
    return days, secs // 3600


def _day(sn, nr):
    return _wall(sn)[0]


def _week(sn, nr):
    return _iso_week(_wall(sn)[0])


def _month(sn, nr):
    return _civil_from_days(_wall(sn)[0])[:2]


def _year(sn, nr):
    return _civil_from_days(_wall(sn)[0])[0]


def _every(sn, nr):
    return nr


Bucket = Callable[[Snapshot, int], object]
_COUNT_BUCKETS = (_every, _hour, _day, _week, _month, _year)
_WITHIN_BUCKETS = (_hour, _day, _week, _month, _year)


def _local_offset(unix: int) -> int:
    try:
        return time.localtime(unix).tm_gmtoff
    except (OverflowError, OSError, ValueError):
        return 0


def threshold_ns(newest: Optional[Snapshot], d: Duration) -> Optional[int]:
    """The instant `d` before the newest snapshot (Go's AddDate(-y, -m, -d) then Add(-h));
    None without a newest snapshot, where Go counts back from year 1 and every snapshot is
    newer."""
    if newest is None:
        return None
    t = newest.time
    offset = t.offset
    days, secs = _wall(newest)
    y, m, day = _civil_from_days(days)
    year, month0 = divmod(y * 12 + (m - 1) - d.months - d.years * 12, 12)
    wall = (_days_from_civil(year, month0 + 1, 1) + day - 1 - d.days) * 86400 + secs
    if offset and _local_offset(t.seconds) == offset:
        # Go parses an offset that is the local zone's as local time (UTC is written as Z
        # and stays UTC), and AddDate then resolves the new wall clock in the local zone,
        # across a DST change
        offset = _local_offset(wall - _local_offset(wall))
    return (wall - offset - d.hours * 3600) * _NS + t.nanos


def _newest_not_in_future(snapshots: Sequence[Snapshot], now_ns: int) -> Optional[Snapshot]:
    newest = None
    for sn in snapshots:
        if sn.time.unix_ns < now_ns and (newest is None or sn.time.unix_ns > newest.time.unix_ns):
            newest = sn
    return newest


# --- applying the policy ------------------------------------------------------------------

def sort_newest_first(snapshots: Sequence[Snapshot]) -> List[Snapshot]:
    """Newest first; equal times keep their given order (restic's stable sort)."""
    return sorted(snapshots, key=lambda sn: -sn.time.unix_ns)


class _BucketRule:
    """One rule that keeps the newest snapshot of each bucket (hour, day, ...): counted
    (count > 0 left, or -1) or within a time range (limit: keep snapshots newer than it)."""

    def __init__(self, bucket: Bucket, reason: str, count: Optional[int] = None,
                 within: bool = False, limit_ns: Optional[int] = None):
        self.bucket, self.reason, self.count = bucket, reason, count
        self.within, self.limit_ns = within, limit_ns
        self.last = None

    def match(self, sn: Snapshot, nr: int, is_oldest: bool) -> Optional[str]:
        """The reason to keep sn, or None. While the rule still applies, the oldest
        snapshot of the group is kept even in a bucket already kept (current restic)."""
        if self.count is not None and (self.count == 0 or self.count < UNLIMITED):
            return None
        if self.within and not _newer(sn, self.limit_ns):
            return None
        value = self.bucket(sn, nr)
        if value == self.last and not is_oldest:
            return None
        reason = self.reason if value != self.last else f"oldest {self.reason}"
        self.last = value
        if self.count is not None and self.count > 0:
            self.count -= 1
        return reason


def _rules(policy: KeepPolicy, newest: Optional[Snapshot]) -> Tuple[List[_BucketRule], List[_BucketRule]]:
    counted = [_BucketRule(bucket, reason, count=getattr(policy, name))
               for (name, _, reason), bucket in zip(COUNT_RULES, _COUNT_BUCKETS)]
    within = [_BucketRule(bucket, f"{descr} within {getattr(policy, name)}", within=True,
                          limit_ns=threshold_ns(newest, getattr(policy, name)))
              for (name, descr), bucket in zip(WITHIN_RULES, _WITHIN_BUCKETS) if not getattr(policy, name).is_zero()]
    return counted, within


def apply_policy(snapshots: Sequence[Snapshot], policy: KeepPolicy, now_ns: Optional[int] = None) -> PolicyResult:
    """Split one group's snapshots into keep and remove, newest first, with the reasons for
    each kept one. now_ns (default: the current time) decides which snapshots are in the
    future; those never count as the newest."""
    ordered = sort_newest_first(snapshots)
    newest = _newest_not_in_future(ordered, time.time_ns() if now_ns is None else now_ns)
    counted, within_rules = _rules(policy, newest)
    within_all = None if policy.within.is_zero() else threshold_ns(newest, policy.within)
    result = PolicyResult([], [], [])
    for nr, sn in enumerate(ordered):
        matches = [f"has tags {format_tag_list(tags)}" for tags in policy.tags if sn.has_tags(tags)]
        if not policy.within.is_zero() and _newer(sn, within_all):
            matches.append(f"within {policy.within}")
        is_oldest = nr == len(ordered) - 1
        matches += [m for m in (rule.match(sn, nr, is_oldest) for rule in counted + within_rules) if m]
        if matches:
            counters = {name: rule.count for (name, _, _), rule in zip(COUNT_RULES, counted)}
            result.keep.append(sn)
            result.reasons.append(KeepReason(sn, matches, counters))
        else:
            result.remove.append(sn)
    return result


def _newer(sn: Snapshot, limit_ns: Optional[int]) -> bool:
    return limit_ns is None or sn.time.unix_ns > limit_ns
