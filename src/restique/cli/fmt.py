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
