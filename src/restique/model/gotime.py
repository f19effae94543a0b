"""Timestamps with nanoseconds and a UTC offset, formatted as Go's time package does.

Python's datetime keeps only microseconds; restic records nanoseconds, and a tree blob's id
depends on the exact text, so times are kept as integer nanoseconds plus an offset.
"""
import calendar
import re
import time

_RFC3339 = re.compile(
    r"^(-?\d{4,})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|z|[+-]\d\d:\d\d)$"
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


class GoTime:
    """An instant in nanoseconds since the epoch plus the UTC offset it is shown in.
    Immutable by convention; equality and order compare (unix_ns, offset)."""

    __slots__ = ("unix_ns", "offset", "_text")

    def __init__(self, unix_ns: int, offset: int = 0):
        self.unix_ns = unix_ns
        self.offset = offset  # seconds east of UTC
        self._text = None

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
    def from_ns(cls, ns: int, local: bool = True) -> "GoTime":
        offset = time.localtime(ns // 1_000_000_000).tm_gmtoff if local else 0
        return cls(ns, offset)

    @classmethod
    def parse(cls, text: str) -> "GoTime":
        m = _RFC3339.match(text)
        if not m:
            raise ValueError(f"invalid time {text!r}")
        year, mon, day, hh, mm, ss, frac, zone = m.groups()
        if zone in ("Z", "z"):
            offset = 0
        else:
            sign = -1 if zone[0] == "-" else 1
            offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
        seconds = calendar.timegm((int(year), int(mon), int(day), int(hh), int(mm), int(ss), 0, 0, 0))
        nanos = int((frac or "0")[:9].ljust(9, "0"))
        return cls((seconds - offset) * 1_000_000_000 + nanos, offset)

    @property
    def seconds(self) -> int:
        return self.unix_ns // 1_000_000_000

    @property
    def nanos(self) -> int:
        return self.unix_ns % 1_000_000_000

    def _wall(self):
        return time.gmtime(self.seconds + self.offset)

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
        """'2006-01-02 15:04:05' in the local time zone, as restic's tables show times."""
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.seconds))
