"""Numbers formatted the way restic prints them."""


def format_bytes(n: int) -> str:
    for shift, unit in ((40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift:
            return "%.3f %s" % (n / (1 << shift), unit)
    return f"{n} B"


def format_duration(seconds: float) -> str:
    """`m:ss`, or `h:mm:ss` from one hour on."""
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_go_duration(seconds: float) -> str:
    """Go's time.Duration.String() after Round(time.Millisecond): `1m2.5s`, `350ms`."""
    ms = int(round(seconds * 1000))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s = ("%d.%03d" % divmod(rest, 1000)).rstrip("0").rstrip(".")
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"
