"""Timestamps with nanoseconds and a UTC offset, formatted as Go's time package does.

Python's datetime keeps only microseconds; restic records nanoseconds, and a tree blob's id
depends on the exact text, so times are kept as integer nanoseconds plus an offset.
"""
import re
import time
from datetime import date

from .. import _gotime

_native_parse = _gotime.parse
_native_time_ns = _gotime.time_ns

# compiled on first use (re caches it): only times the fast path cannot read need it
_RFC3339 = (
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?(Z|z|[+-][0-9]{2}:[0-9]{2})$"
)


# Backups format many timestamps that share their second; the date part is cached.
_FORMATTED = {}


def _format_parts(seconds: int, offset: int):
    t = time.gmtime(seconds + offset)
    date = "%04d-%02d-%02dT%02d:%02d:%02d" % t[:6]
    if offset == 0:
        return date, "Z"
    sign = "-" if offset < 0 else "+"
    off = abs(offset)
    return date, "%s%02d:%02d" % (sign, off // 3600, off % 3600 // 60)


def _check_fields(text: str, year: int, month: int, day: int, hour: int, minute: int, second: int) -> None:
    """ValueError for a date or clock reading that does not exist, as Go's time.Parse refuses
    it (formatting such a time later would fail or print another time)."""
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)
            and hour < 24 and minute < 60 and second < 60):
        raise ValueError(f"invalid time {text!r}: field out of range")


_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal()


def _days_in_month(year: int, month: int) -> int:
    # calendar.monthrange also works out the weekday: most of a parse's time
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _MONTH_DAYS[month]


def _timegm(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """calendar.timegm's arithmetic, without loading calendar (and the locale module it loads)
    on every command that reads a snapshot."""
    days = date(year, month, 1).toordinal() - _EPOCH_ORDINAL + day - 1
    return ((days * 24 + hour) * 60 + minute) * 60 + second


def _zone_offset(text: str, zone: str) -> int:
    """Seconds east of UTC for 'Z' or '+hh:mm'."""
    if zone in ("Z", "z"):
        return 0
    if not (zone[1:3].isdigit() and zone[4:6].isdigit()) or zone[0] not in "+-" or zone[3] != ":" \
            or int(zone[1:3]) >= 24 or int(zone[4:6]) >= 60:
        raise ValueError(f"invalid time {text!r}")
    return (-1 if zone[0] == "-" else 1) * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)


def _common_time():
    """The matcher of the shape every tree and snapshot time has: 'YYYY-MM-DDTHH:MM:SS',
    an optional fraction, 'Z' or '+hh:mm' (compiled on first use: the native reader reads
    these, and Python sees only the ones it leaves, mostly to say what is wrong with them)."""
    global _COMMON_TIME
    _COMMON_TIME = re.compile(
        r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])"
        r"(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2})").fullmatch
    return _COMMON_TIME


_COMMON_TIME = None


class GoTime:
    """An instant in nanoseconds since the epoch plus the UTC offset it is shown in.
    Immutable by convention; equality and order compare (unix_ns, offset)."""

    __slots__ = ("unix_ns", "offset", "_text", "_source")

    def __init__(self, unix_ns: int, offset: int = 0):
        self.unix_ns = unix_ns
        self.offset = offset  # seconds east of UTC
        self._text = None

    @classmethod
    def lazy(cls, text: str) -> "GoTime":
        """The time in text, parsed on first use; text that is not a time reads as GoTime(0),
        as tree nodes treat it. Trees hold three times per entry and most commands look at
        one of them or none."""
        t = cls.__new__(cls)
        t._text = None
        t._source = text
        return t

    def __getattr__(self, name: str):
        # only reached while unix_ns/offset are unset, i.e. for a lazy time not yet parsed
        if name not in ("unix_ns", "offset"):
            raise AttributeError(name)
        try:
            self.unix_ns, self.offset = self._parse_pair(object.__getattribute__(self, "_source"))
        except (ValueError, TypeError, KeyError, IndexError):
            self.unix_ns, self.offset = 0, 0
        return object.__getattribute__(self, name)

    def _key(self):
        return (self.unix_ns, self.offset)

    def __eq__(self, other):
        return isinstance(other, GoTime) and self._key() == other._key()

    def __lt__(self, other):
        return self._key() < other._key()

    def __le__(self, other):
        return self._key() <= other._key()

    def __gt__(self, other):
        return self._key() > other._key()

    def __ge__(self, other):
        return self._key() >= other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return f"GoTime({self.unix_ns}, {self.offset})"

    @classmethod
    def now(cls) -> "GoTime":
        ns = time.time_ns()
        return cls(ns, time.localtime(ns // 1_000_000_000).tm_gmtoff)

    @classmethod
    def parse(cls, text: str) -> "GoTime":
        """RFC 3339 with an optional fraction of up to nanoseconds; ValueError otherwise."""
        return cls(*cls._parse_pair(text))

    @classmethod
    def _parse_pair(cls, text: str):
        """(unix_ns, offset) of text. Trees hold three times per node: the common shape is
        read natively, and Python reads (or refuses) the rest."""
        pair = _native_parse(text)
        if pair is None:
            return cls._parse_python(text)
        return pair

    @classmethod
    def _parse_python(cls, text: str):
        """_parse_pair without the native reader: the common shape, checked date first, then
        zone (the order decides which error a text with two gets), else the full expression."""
        match = (_COMMON_TIME or _common_time())(text)
        if match is None:
            return cls._parse_slow(text)
        fields = [int(part) for part in match.groups()[:6]]
        fraction, zone = match.groups()[6:]
        _check_fields(text, *fields)
        offset = _zone_offset(text, zone)
        nanos = int(fraction[:9].ljust(9, "0")) if fraction else 0
        return (_timegm(*fields) - offset) * 1_000_000_000 + nanos, offset

    @staticmethod
    def _parse_slow(text: str):
        """(unix_ns, offset) by the full regular expression."""
        m = re.match(_RFC3339, text)
        if not m:
            raise ValueError(f"invalid time {text!r}")
        fields = [int(part) for part in m.groups()[:6]]
        frac, zone = m.groups()[6:]
        offset = _zone_offset(text, zone)
        _check_fields(text, *fields)
        seconds = _timegm(*fields)
        nanos = int((frac or "0")[:9].ljust(9, "0"))
        return (seconds - offset) * 1_000_000_000 + nanos, offset

    @property
    def seconds(self) -> int:
        return self.unix_ns // 1_000_000_000

    @property
    def nanos(self) -> int:
        return self.unix_ns % 1_000_000_000

    def rfc3339(self) -> str:
        """Go's time.RFC3339Nano: trailing zeros of the fraction dropped, 'Z' for UTC."""
        text = self._text
        if text is None:
            text = self._text = self._format()
        return text

    def _format(self) -> str:
        seconds, nanos = divmod(self.unix_ns, 1_000_000_000)
        key = (seconds, self.offset)
        parts = _FORMATTED.get(key)
        if parts is None:
            parts = _format_parts(seconds, self.offset)
            if len(_FORMATTED) > 65536:
                _FORMATTED.clear()
            _FORMATTED[key] = parts
        if nanos:
            return parts[0] + "." + ("%09d" % nanos).rstrip("0") + parts[1]
        return parts[0] + parts[1]

    def local_string(self) -> str:
        """Go's t.Local().Format("2006-01-02 15:04:05"), as restic's tables show times
        (a four-digit year even before 1000)."""
        return "%04d-%02d-%02d %02d:%02d:%02d" % tuple(time.localtime(self.seconds)[:6])

    def go_string(self) -> str:
        """Go's Time.String() of a time read from JSON: `2006-01-02 15:04:05.999999999 -0700 MST`.
        Go names the zone only when the offset is the local zone's (or UTC)."""
        text = "%04d-%02d-%02d %02d:%02d:%02d" % tuple(time.gmtime(self.seconds + self.offset)[:6])
        if self.nanos:
            text += "." + ("%09d" % self.nanos).rstrip("0")
        sign = "-" if self.offset < 0 else "+"
        off = abs(self.offset)
        numeric = "%s%02d%02d" % (sign, off // 3600, off % 3600 // 60)
        local = time.localtime(self.seconds)
        if local.tm_gmtoff == self.offset:
            zone = local.tm_zone
        elif self.offset == 0:
            zone = "UTC"
        else:
            zone = numeric
        return f"{text} {numeric} {zone}"


def node_time_ns(text) -> int:
    """unix_ns of a tree node's time field as Node reads it (0 for anything that is not a
    time), without a GoTime: restore and mount read two or three per entry. The common shape
    is read natively, anything else as a lazy GoTime reads it."""
    if type(text) is str:
        unix_ns = _native_time_ns(text)
        if unix_ns is not None:
            return unix_ns
        if text:
            return GoTime.lazy(text).unix_ns
    return 0
