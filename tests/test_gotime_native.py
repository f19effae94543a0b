"""One native reader of tree times serves GoTime, the restore's entries and the mount: every
text reads as it did when each had its own parser (frozen copies of those below), and errors
are GoTime's own."""
import random
import re
from datetime import date

import pytest

from restique import _gotime
from restique.model.gotime import GoTime, node_time_ns
from restique.operations.restorer import entries as restore_entries
from restique.operations.snapshot_fs import entries as mount_entries


# --- the parsers as they were before the native one (kept to compare against) ---

_OLD_RFC3339 = (
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?(Z|z|[+-][0-9]{2}:[0-9]{2})$"
)
_OLD_COMMON = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])"
    r"(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2})").fullmatch
_OLD_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _old_check_fields(text, year, month, day, hour, minute, second):
    leap = month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not (1 <= month <= 12 and 1 <= day <= (29 if leap else _OLD_MONTH_DAYS[month])
            and hour < 24 and minute < 60 and second < 60):
        raise ValueError(f"invalid time {text!r}: field out of range")


def _old_timegm(year, month, day, hour=0, minute=0, second=0):
    days = date(year, month, 1).toordinal() - 719163 + day - 1
    return ((days * 24 + hour) * 60 + minute) * 60 + second


def _old_zone_offset(text, zone):
    if zone in ("Z", "z"):
        return 0
    if not (zone[1:3].isdigit() and zone[4:6].isdigit()) or zone[0] not in "+-" or zone[3] != ":" \
            or int(zone[1:3]) >= 24 or int(zone[4:6]) >= 60:
        raise ValueError(f"invalid time {text!r}")
    return (-1 if zone[0] == "-" else 1) * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)


def old_parse_pair(text):
    """GoTime._parse_pair before the native reader (its caches left out: they only saved time)."""
    match = _OLD_COMMON(text)
    if match is None:
        m = re.match(_OLD_RFC3339, text)
        if not m:
            raise ValueError(f"invalid time {text!r}")
        fields = [int(part) for part in m.groups()[:6]]
        frac, zone = m.groups()[6:]
        offset = _old_zone_offset(text, zone)
        _old_check_fields(text, *fields)
        nanos = int((frac or "0")[:9].ljust(9, "0"))
        return (_old_timegm(*fields) - offset) * 1_000_000_000 + nanos, offset
    day_text, hour, minute, second, fraction, zone = match.groups()
    year, month, day = int(day_text[:4]), int(day_text[5:7]), int(day_text[8:10])
    _old_check_fields(text, year, month, day, 0, 0, 0)
    day = _old_timegm(year, month, day)
    offset = _old_zone_offset(text, zone)
    nanos = int(fraction[:9].ljust(9, "0")) if fraction else 0
    return (day + int(hour) * 3600 + int(minute) * 60 + int(second) - offset) * 1_000_000_000 + nanos, offset


def old_node_ns(value):
    """unix_ns of a node's time field as Node.from_json read it (a lazy GoTime's parse)."""
    if type(value) is not str or not value:
        return 0
    try:
        return old_parse_pair(value)[0]
    except (ValueError, TypeError, KeyError, IndexError):
        return 0


_OLD_DAYS, _OLD_SECONDS = {}, {}
_OLD_FRACTION_SCALE = [10 ** (9 - digits) for digits in range(10)]


def old_mount_ns(text):
    """The mount's own reader of a time before the native one: slicing, with its second and
    its date's midnight cached."""
    if not text:
        return 0
    zone_at = len(text) - 1 if text[-1] == "Z" else len(text) - 6
    if 20 < zone_at < 30 and text[19] == ".":
        fraction = text[20:zone_at]
        if fraction.isdigit():
            key = text[:19] + text[zone_at:]
            second = _OLD_SECONDS.get(key)
            if second is None:
                second = _old_mount_second(text, zone_at)
                if second is None:
                    return _old_mount_slowly(text)
                _OLD_SECONDS[key] = second
            return second + int(fraction) * _OLD_FRACTION_SCALE[len(fraction)]
    return _old_mount_slowly(text)


def _old_mount_second(text, zone_at):
    day = _OLD_DAYS.get(text[:10] + text[zone_at:])
    if day is None or text[13] != ":" or text[16] != ":":
        return None
    try:
        return day + ((int(text[11:13]) * 60 + int(text[14:16])) * 60 + int(text[17:19])) * 1_000_000_000
    except ValueError:
        return None


def _old_mount_slowly(text):
    try:
        unix_ns = old_parse_pair(text)[0]
    except ValueError:
        return 0
    zone_at = len(text) - 1 if text[-1] == "Z" else len(text) - 6
    if len(text) >= 20 and text[19] in ".Z+-" and text[13] == ":" and text[16] == ":":
        clock = text[11:13] + text[14:16] + text[17:19]
        if clock.isdigit() and clock < "240000" and clock[4:] < "60":
            _OLD_DAYS[text[:10] + text[zone_at:]] = old_parse_pair(text[:10] + "T00:00:00" + text[zone_at:])[0]
    return unix_ns


# the shape restic writes: an upper-case T and Z, or a numeric zone
_RESTIC_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})").fullmatch


def _outcome(parse, value):
    try:
        return "ok", parse(value)
    except Exception as exc:  # the kind and message are part of what must not change
        return type(exc).__name__, str(exc)


# --- texts: restic's shapes and mutations of them ---

BASE_TIMES = [
    "2023-05-01T12:34:56.123456789+02:00",
    "2026-12-03T04:19:14.405366455Z",
    "2026-12-03T04:19:14-07:30",
    "2026-12-03t04:19:14.4z",
    "2026-12-03 04:19:14Z",
    "2024-02-29T23:59:59.123456789123+14:00",
    "1969-12-31T23:59:59.999999999Z",
    "1970-01-01T00:00:00+00:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00-00:01",
    "0000-01-01T00:00:00Z",
    "2262-04-11T23:47:16.854775807Z",  # the last nanosecond of a signed 64-bit count
    "2262-04-11T23:47:17Z",
    "2262-04-12T01:47:16.854775807+02:00",
    "1677-09-21T00:12:43.145224192Z",
    "1677-09-21T00:12:43.145224191Z",
    "9999-12-31T23:59:59.999999999-23:59",
    "2000-02-29T12:00:00Z",
    "1900-02-29T12:00:00Z",
    "2023-02-29T10:00:00Z",
    "2023-04-31T10:00:00Z",
    "2023-13-01T10:00:00Z",
    "2023-00-01T10:00:00Z",
    "2023-01-00T10:00:00Z",
    "2026-12-03T24:00:00Z",
    "2026-12-03T04:60:00Z",
    "2016-12-31T23:59:60Z",  # a leap second: Go refuses it too
    "2016-12-31T23:59:60.5+01:00",
    "2026-12-03T04:19:14.Z",
    "2026-12-03T04:19:14+25:00",
    "2026-12-03T04:19:14+05:60",
    "2026-12-03T04:19:14+0500",
    "2026-12-03T04:19:14+05:00:00",
    "2023-02-29T10:00:00+25:00",  # two errors: which one is reported must not change
    "2023-02-29T24:00:00+25:00",
    "2026-12-03T04:19:14Z\n",
    "2026-12-03T04:19:14Z ",
    " 2026-12-03T04:19:14Z",
    "2026-12-03T04:19:14.4\u0663Z",
    "2026-12-03T0\u0664:19:14Z",
    "\uff12026-12-03T04:19:14Z",
    "2026-12-03T04:19:14.5\udcffZ",
    "2026-12-03T04:19:14\x00Z",
    "2026-12-03T+4:19:14.5Z",
    "2026-12-03T 4:19:14.5Z",
    "",
    "Z",
    "not a time",
    "2026-12-03",
] + ["2026-12-03T04:19:14." + "123456789012"[:n] + "Z" for n in range(1, 13)] \
  + ["2026-12-03T04:19:14." + "987654321"[:n] + "-09:45" for n in range(1, 10)]

NOT_TEXT = [None, 0, 5, 1.5, True, False, [], ["2026-12-03T04:19:14Z"], {}, {"a": 1}, b"2026-12-03T04:19:14Z"]

_ALPHABET = "0123456789:.-+TtZz \n\u0663\uff10"


def _mutations(text, rng, count):
    for _ in range(count):
        chars = list(text)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(chars) + 1)
            op = rng.randrange(4)
            if op == 0 and i < len(chars):
                del chars[i]
            elif op == 1:
                chars.insert(i, rng.choice(_ALPHABET))
            elif op == 2 and i < len(chars):
                chars[i] = rng.choice(_ALPHABET)
            elif i < len(chars) and chars[i].isdigit():
                chars[i] = str(rng.randrange(10))  # another valid-looking digit
        yield "".join(chars)


def _random_times(rng, count):
    """Well-formed texts with random fields, in and out of range."""
    for _ in range(count):
        year = rng.choice([rng.randrange(10000), rng.randrange(1600, 2300)])
        fields = (year, rng.randrange(14), rng.randrange(33), rng.randrange(25), rng.randrange(61), rng.randrange(61))
        text = "%04d-%02d-%02dT%02d:%02d:%02d" % fields
        digits = rng.randrange(13)
        if digits:
            text += "." + "".join(rng.choice("0123456789") for _ in range(digits))
        zone = rng.randrange(3)
        text += "Z" if zone == 0 else "%s%02d:%02d" % ("+-"[zone - 1], rng.randrange(26), rng.randrange(62))
        yield text


def _texts():
    rng = random.Random(20261203)
    texts = list(BASE_TIMES)
    for base in BASE_TIMES:
        texts.extend(_mutations(base, rng, 60))
    texts.extend(_random_times(rng, 20000))
    return texts


TEXTS = _texts()


def test_gotime_parses_every_text_as_before():
    for text in TEXTS + NOT_TEXT:
        assert _outcome(GoTime._parse_pair, text) == _outcome(old_parse_pair, text), text


def test_gotime_parse_and_lazy_times_as_before():
    for text in TEXTS:
        old = _outcome(old_parse_pair, text)
        assert _outcome(lambda t: GoTime.parse(t)._key(), text) == old, text
        lazy = GoTime.lazy(text)
        assert (lazy.unix_ns, lazy.offset) == (old[1] if old[0] == "ok" else (0, 0)), text


def test_node_times_read_as_before_by_restore_and_mount():
    for value in TEXTS + NOT_TEXT:
        want = old_node_ns(value)
        assert node_time_ns(value) == want, value
        assert restore_entries.time_ns(value) == want, value
    # twice over: the mount read a second by what an earlier text had cached
    for value in TEXTS * 2:
        assert mount_entries.node_time_ns(value) == old_node_ns(value), value


def test_mount_reads_restics_times_as_before():
    """Where the mount's own reader gave a time in restic's shape a value, it is the same;
    for other texts it could differ from Node (next test), and the mount now reads as Node."""
    _OLD_DAYS.clear()
    _OLD_SECONDS.clear()
    compared = 0
    for text in TEXTS * 2:
        try:
            old = old_mount_ns(text)
        except ValueError:
            continue
        if _RESTIC_SHAPE(text) and old_node_ns(text) != 0:
            compared += 1
            assert mount_entries.node_time_ns(text) == old, text
    assert compared > len(TEXTS) // 10


def test_mount_reads_other_texts_as_node_does():
    """The mount's own reader took ' 4' or '+4' for an hour and other scripts' digits for a
    fraction once the day was cached, failed on a lower-case 't...z' time and on a time field
    that was not a string. Node reads the first ones as 0, the times as times."""
    _OLD_DAYS.clear()
    _OLD_SECONDS.clear()
    old_mount_ns("2026-12-03T04:19:14.5Z")  # caches the day
    for text in ("2026-12-03T+4:19:14.5Z", "2026-12-03T 4:19:14.5Z", "2026-12-03T04:19:14.5\u0663Z",
                 "2026-12-03T04:19:75.5Z"):
        assert old_mount_ns(text) != 0
        assert mount_entries.node_time_ns(text) == 0, text
    with pytest.raises(ValueError):
        old_mount_ns("2026-12-03t04:19:14.4z")
    assert mount_entries.node_time_ns("2026-12-03t04:19:14.4z") == old_node_ns("2026-12-03T04:19:14.4Z") != 0
    for value in (5, True, ["2026-12-03T04:19:14Z"], {"a": 1}):
        with pytest.raises((TypeError, KeyError)):
            old_mount_ns(value)
        assert mount_entries.node_time_ns(value) == 0


def test_native_reader_leaves_unusual_texts_to_python():
    assert _gotime.parse("2023-05-01T12:34:56.123456789+02:00") == old_parse_pair("2023-05-01T12:34:56.123456789+02:00")
    assert _gotime.time_ns("2023-05-01T12:34:56.1Z") == old_parse_pair("2023-05-01T12:34:56.1Z")[0]
    for text in ("2026-12-03T04:19:14.4\u0663Z", "2262-04-11T23:47:17Z", "0000-01-01T00:00:00Z",
                 "2016-12-31T23:59:60Z", "2026-12-03 04:19:14Z", "2026-12-03T04:19:14Z\n", "x"):
        assert _gotime.parse(text) is None and _gotime.time_ns(text) is None, text
    for value in NOT_TEXT:
        assert _gotime.parse(value) is None and _gotime.time_ns(value) is None


def test_native_reader_agrees_where_it_reads():
    read = 0
    for text in TEXTS:
        pair = _gotime.parse(text)
        if pair is not None:
            read += 1
            assert ("ok", pair) == _outcome(old_parse_pair, text), text
            assert _gotime.time_ns(text) == pair[0]
    assert read > len(TEXTS) // 10


@pytest.mark.parametrize("text", ["2026-12-03T04:19:14+25:00", "2023-02-29T10:00:00Z", "nonsense"])
def test_parse_errors_are_gotimes(text):
    with pytest.raises(ValueError, match="invalid time"):
        GoTime.parse(text)
