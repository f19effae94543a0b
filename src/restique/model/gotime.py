"""Timestamps with nanoseconds and a UTC offset, formatted as Go's time package does.

Python's datetime keeps only microseconds; restic records nanoseconds, and a tree blob's id
depends on the exact text, so times are kept as integer nanoseconds plus an offset.
"""
import re
import time
from datetime import date

# compiled on first use (re caches it): only times the fast path cannot read need it
_RFC3339 = (
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?(Z|z|[+-][0-9]{2}:[0-9]{2})$"
)


# Backups format many timestamps that share their second; the date part is cached.
_FORMATTED = {}
_PARSED = {}
_DAYS = {}  # 'YYYY-MM-DD' -> its midnight in seconds since the epoch (UTC)


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


def _parse_second(text: str, zone: str):
    """(unix_ns, offset) of 'YYYY-MM-DDTHH:MM:SS' (text[:19]) in zone ('Z' or '+hh:mm')."""
    if not (text.isascii() and text[:4].isdigit() and text[5:7].isdigit() and text[8:10].isdigit()
            and text[11:13].isdigit() and text[14:16].isdigit() and text[17:19].isdigit() and text[7] == "-"
            and text[13] == ":" and text[16] == ":"):
        return GoTime._parse_slow(text[:19] + zone)
    offset = _zone_offset(text, zone)
    hour, minute, second = int(text[11:13]), int(text[14:16]), int(text[17:19])
    day = _DAYS.get(text[:10])  # only dates that passed the check below are cached
    if day is None:  # files of one backup share few days; timegm is the slow part
        year, month, mday = int(text[:4]), int(text[5:7]), int(text[8:10])
        _check_fields(text, year, month, mday, 0, 0, 0)
        day = _timegm(year, month, mday)
        if len(_DAYS) > 65536:
            _DAYS.clear()
        _DAYS[text[:10]] = day
    if hour >= 24 or minute >= 60 or second >= 60:
        raise ValueError(f"invalid time {text!r}: field out of range")
    seconds = day + hour * 3600 + minute * 60 + second
    return (seconds - offset) * 1_000_000_000, offset


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
        """(unix_ns, offset) of text. Trees hold three times per node, so the common shape is
        parsed by slicing, with the date part cached."""
        n = len(text)
        if n >= 20 and text[4] == "-" and text[10] in "Tt" and text[19] in ".Zz+-":
            zone_at = n - 1 if text[-1] in "Zz" else n - 6
            if text[19] == "." and zone_at > 20:
                frac = text[20:zone_at]
            elif zone_at == 19:
                frac = ""
            else:
                frac = None
            zone = text[zone_at:]
            if frac is not None and (not frac or frac.isdigit() and frac.isascii()) \
                    and (len(zone) == 1 or zone[3] == ":"):
                key = (text[:19], zone)
                base = _PARSED.get(key)
                if base is None:
                    base = _parse_second(text, zone)
                    if len(_PARSED) > 4096:  # a restore of a million files rarely repeats a second
                        _PARSED.clear()
                    _PARSED[key] = base
                nanos = int(frac[:9].ljust(9, "0")) if frac else 0
                return base[0] + nanos, base[1]
        return cls._parse_slow(text)

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
