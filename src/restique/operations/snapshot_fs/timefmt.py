"""Go's time.Format layouts (`2006-01-02T15:04:05Z07:00`), for mount's --time-template.

A layout names the parts of one reference time; each recognised part is replaced by the
same part of the snapshot's time, shown in the offset the snapshot recorded (Go formats a
time read from JSON in its own fixed zone). Everything else is copied as it is.
"""
import re
import time

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

# longest first where one token is the start of another, as Go's layout parser decides
_TOKEN = re.compile(
    r"January|Jan|Monday|Mon|MST|2006|002|__2|_2|01|02|03|04|05|06|15|1|2|3|4|5|PM|pm"
    r"|Z07:00:00|Z070000|Z07:00|Z0700|Z07|-07:00:00|-070000|-07:00|-0700|-07"
    r"|[.,](?:0+|9+)(?!\d)")


def _zone(offset: int, token: str) -> str:
    if token.startswith("Z") and offset == 0:
        return "Z"
    sign = "-" if offset < 0 else "+"
    hours, rest = divmod(abs(offset), 3600)
    minutes, seconds = divmod(rest, 60)
    body = token[1:]
    if body == "07":
        return "%s%02d" % (sign, hours)
    if body in ("07:00", "0700"):
        sep = ":" if ":" in body else ""
        return "%s%02d%s%02d" % (sign, hours, sep, minutes)
    sep = ":" if ":" in body else ""
    return "%s%02d%s%02d%s%02d" % (sign, hours, sep, minutes, sep, seconds)


def _fraction(nanos: int, token: str) -> str:
    digits = ("%09d" % nanos)[:len(token) - 1]
    if token[1] == "9":  # trailing zeros dropped, the separator too when nothing is left
        digits = digits.rstrip("0")
        return token[0] + digits if digits else ""
    return token[0] + digits


def format_go_time(unix_ns: int, offset: int, layout: str) -> str:
    """Go's Time.Format(layout) of the instant unix_ns shown at UTC offset (seconds east)."""
    seconds, nanos = divmod(unix_ns, 1_000_000_000)
    t = time.gmtime(seconds + offset)
    hour12 = t.tm_hour % 12 or 12
    parts = {
        "January": _MONTHS[t.tm_mon - 1], "Jan": _MONTHS[t.tm_mon - 1][:3],
        "Monday": _DAYS[t.tm_wday], "Mon": _DAYS[t.tm_wday][:3],
        "2006": "%04d" % t.tm_year, "06": "%02d" % (t.tm_year % 100),
        "01": "%02d" % t.tm_mon, "1": str(t.tm_mon),
        "02": "%02d" % t.tm_mday, "2": str(t.tm_mday), "_2": "%2d" % t.tm_mday,
        "002": "%03d" % t.tm_yday, "__2": "%3d" % t.tm_yday,
        "15": "%02d" % t.tm_hour, "03": "%02d" % hour12, "3": str(hour12),
        "04": "%02d" % t.tm_min, "4": str(t.tm_min), "05": "%02d" % t.tm_sec, "5": str(t.tm_sec),
        "PM": "PM" if t.tm_hour >= 12 else "AM", "pm": "pm" if t.tm_hour >= 12 else "am",
        "MST": "UTC" if offset == 0 else _zone(offset, "-0700"),
    }

    def replace(match: "re.Match") -> str:
        token = match.group(0)
        if token in parts:
            return parts[token]
        if token[0] in ".,":
            return _fraction(nanos, token)
        return _zone(offset, token)

    return _TOKEN.sub(replace, layout)
