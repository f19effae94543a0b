"""The times `find --oldest/--newest` accepts, read as restic reads them.

restic tries a fixed list of Go layouts with time.ParseInLocation in the local zone (dates
as 2006-01-02 or 02.01.2006, optional hh:mm[:ss], optional numeric offset or zone name, and
Go's RubyDate). Go's parser rules kept here: a layout space matches one or more spaces, the
hour may have one digit, everything else its full width, a fraction of a second may follow
the seconds, a zone name the local zone does not use counts as UTC, and nothing may be left
over.
"""
import calendar
import re
import time
from typing import Optional

from ..errors import UsageError
from ..model.gotime import GoTime
from ..model.names import go_quote

_DATE_ISO = r"(?P<year>\d{4})-(?P<month>\d\d)-(?P<day>\d\d)"
_DATE_DOT = r"(?P<day>\d\d)\.(?P<month>\d\d)\.(?P<year>\d{4})"
_HM = r" +(?P<hour>\d\d?):(?P<minute>\d\d)"
_SECONDS = r":(?P<second>\d\d)(?:[.,](?P<frac>\d+))?"
_OFFSET = r" +(?P<sign>[+-])(?P<oh>\d\d)(?P<om>\d\d)"
_ZONE = r" +(?P<zone>[A-Za-z0-9+-]+)"


def _layouts():
    out = []
    for date in (_DATE_ISO, _DATE_DOT):
        out += [date, date + _HM, date + _HM + _SECONDS, date + _HM + _SECONDS + _OFFSET,
                date + _HM + _SECONDS + _ZONE]
    # Go's RubyDate: "Mon Jan 2 15:04:05 -0700 MST 2006"
    out.append(r"(?P<weekday>[A-Za-z]{3}) +(?P<monthname>[A-Za-z]{3}) +(?P<day>\d\d?)"
               + _HM + _SECONDS + _OFFSET + _ZONE + r" +(?P<year>\d{4})")
    return [re.compile(layout + r"\Z") for layout in out]


_LAYOUTS = _layouts()
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def parse_find_time(text: str) -> GoTime:
    """The instant text names; UsageError `unable to parse time: "text"` as restic says."""
    for layout in _LAYOUTS:
        m = layout.match(text)
        if m:
            instant = _instant(m.groupdict())
            if instant is not None:
                return instant
    raise UsageError(f'unable to parse time: "{go_quote(text)}"')


def _instant(f: dict) -> Optional[GoTime]:
    """The instant of one layout's fields, or None where Go rejects the values."""
    if f.get("weekday") is not None:
        if f["weekday"].lower() not in _WEEKDAYS or f["monthname"].lower() not in _MONTHS:
            return None
        month = _MONTHS.index(f["monthname"].lower()) + 1
    else:
        month = int(f["month"])
    year, day = int(f["year"]), int(f["day"])
    hour, minute, second = (int(f.get(k) or 0) for k in ("hour", "minute", "second"))
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]
            and hour < 24 and minute < 60 and second < 60):
        return None
    frac = f.get("frac") or ""
    nanos = int(frac[:9].ljust(9, "0")) if frac else 0
    wall = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if f.get("sign"):  # a numeric offset decides, also when a zone name follows it
        offset = (int(f["oh"]) * 3600 + int(f["om"]) * 60) * (-1 if f["sign"] == "-" else 1)
    elif f.get("zone"):
        offset = _zone_offset(f["zone"], wall)
        if offset is None:
            return None
    else:
        offset = _local_offset(year, month, day, hour, minute, second)
    return GoTime((wall - offset) * 1_000_000_000 + nanos, offset)


def _local_offset(*wall) -> int:
    """The local zone's UTC offset at this wall-clock time."""
    seconds = time.mktime(tuple(wall) + (0, 0, -1))
    return time.localtime(seconds).tm_gmtoff


def _zone_offset(zone: str, wall: int) -> Optional[int]:
    """The offset Go applies for a zone name: the local zone's own abbreviations have theirs;
    UTC, GMT+h, +hh and other abbreviations (3 to 5 capitals, 4 and 5 ending in T) count as
    UTC; None if Go does not take it for a zone name."""
    if zone == "UTC":
        return 0
    m = re.fullmatch(r"GMT(?:[+-](\d+))?", zone)
    if m:  # Go shows GMT+h with that offset but keeps the clock reading as UTC
        return 0 if int(m.group(1) or 0) <= 23 else None
    m = re.fullmatch(r"[+-](\d+)", zone)  # an unnamed zone such as +03: Go keeps no offset
    if m:
        return 0 if int(m.group(1)) <= 23 else None
    named = zone in ("ChST", "MeST") or re.fullmatch(r"[A-Z]{3}|[A-Z]{3}T|[A-Z]{4}T|WITA", zone)
    if not named:
        return None
    for guess in (wall - 14 * 3600, wall, wall + 14 * 3600):  # the local zone's name then
        local = time.localtime(guess)
        if local.tm_zone == zone:
            return local.tm_gmtoff
    if zone == time.tzname[0]:  # its name at another time of the year
        return -time.timezone
    if time.daylight and zone == time.tzname[1]:
        return -time.altzone
    return 0
