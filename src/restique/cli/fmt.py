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


# --- one tree entry as `ls -l` and `find -l` print it (restic's formatNode) ---

_MODE_LETTERS = "dalTLDpSugct?"  # Go's os.FileMode bits 31..19
_TYPE_BITS = {"dir": 1 << 31, "symlink": 1 << 27, "dev": 1 << 26, "chardev": (1 << 26) | (1 << 21),
              "fifo": 1 << 25, "socket": 1 << 24}
_mode_strings: dict = {}
_local_times: dict = {}


def file_mode_string(mode: int) -> str:
    """Go's os.FileMode.String(): type letters (or `-`), then rwxrwxrwx."""
    text = _mode_strings.get(mode)
    if text is None:
        letters = "".join(c for i, c in enumerate(_MODE_LETTERS) if mode & (1 << (31 - i))) or "-"
        text = letters + "".join(c if mode & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))
        _mode_strings[mode] = text
    return text


def format_node(path: str, node, long: bool = False, human: bool = False) -> str:
    """The path alone, or with long: mode, uid, gid, size, local mtime, path and ` -> target`
    for a symlink. Only regular files show a size; human gives it as format_bytes does."""
    if not long:
        return path
    size = node.size if node.type == "file" else 0
    seconds = node.mtime.seconds
    when = _local_times.get(seconds)
    if when is None:
        if len(_local_times) > 65536:
            _local_times.clear()
        when = _local_times[seconds] = node.mtime.local_string()
    target = " -> " + node.linktarget if node.type == "symlink" else ""
    return "%s %5d %5d %s %s %s%s" % (
        file_mode_string(_TYPE_BITS.get(node.type, 0) | node.mode), node.uid, node.gid,
        format_bytes(size) if human else "%6d" % size, when, path, target)


# --- a counter's final line, as restic prints a progress bar when stdout is not a terminal ---

def progress_counter_line(seconds: float, done: int, total: int, unit: str) -> str:
    """`[0:00] 100.00%  22 / 22 packs processed`; without a total, `[0:00]          0 packs copied`."""
    if not total:
        return f"[{format_duration(seconds)}]          {done} {unit}"
    percent = min(100.0, 100.0 * done / total)
    return f"[{format_duration(seconds)}] {percent:3.2f}%  {done} / {total} {unit}"
