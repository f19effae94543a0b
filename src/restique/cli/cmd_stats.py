"""restique stats: totals about the data of some snapshots, in restic 0.14's text layout; the
JSON object and the compression figures (raw-data mode, repository format 2) as current
restic prints them."""
import click

from .options import snapshot_filter_options

# restic 0.14 right-aligns its labels to the longest of its own; the compression labels
# that current restic adds are longer, so the block widens when they are shown
_LABEL_WIDTH = len("Snapshots processed")
_WIDE_LABEL_WIDTH = len("Compression Space Saving")


@click.command("stats")
@click.argument("snapshot_ids", nargs=-1)
@click.option("--mode", default="restore-size", metavar="string",
              help="counting mode: restore-size (default), files-by-contents, blobs-per-file or raw-data")
@snapshot_filter_options()
@click.pass_obj
def stats(opts, snapshot_ids, mode, snapshot_filter):
    """Scan the repository and show basic statistics.

    The "stats" command walks one or multiple snapshots in a repository and accumulates
    statistics about the data stored therein. It reports on the number of unique files and
    their sizes, according to one of the counting modes as given by the --mode flag.

    It operates on all snapshots matching the selection criteria or all snapshots if nothing
    is specified. The special snapshot ID "latest" is also supported.

    \b
    The modes are:
    * restore-size: (default) Counts the size of the restored files.
    * files-by-contents: Counts total size of unique files, where a file is
       considered unique if it has unique contents.
    * raw-data: Counts the size of blobs in the repository, regardless of
      how many files reference them.
    * blobs-per-file: A combination of files-by-contents and raw-data.

    Exit status is 0 if the command was successful, and 1 if there was any error.
    """
    from ..errors import UsageError
    from ..operations.stats import StatsOptions, stats as count
    from .output import print_warning, write_text

    options = StatsOptions(mode=mode, snapshot_ids=snapshot_ids, filter=snapshot_filter.filter())
    try:
        options.validate()  # before opening the repository, as restic does
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None  # printed without "Fatal:", as restic does

    repo = opts.open_for_reading()
    if not opts.json:
        write_text("scanning...\n")
    result = count(repo, options, warn=print_warning)
    if opts.json:
        write_text(_json_line(result.to_json()))
    else:
        write_text(_text(result))


def _json_line(obj: dict) -> str:
    """The object on one line; floats as Go writes them (json would write 100.0)."""
    from ..model import gojson

    fields = (f"{gojson.string(key)}:{gojson.float_literal(v) if isinstance(v, float) else v}"
              for key, v in obj.items())
    return "{" + ",".join(fields) + "}\n"


def _text(result) -> str:
    from .fmt import format_bytes

    lines = [("Snapshots processed", str(result.snapshots_count))]
    if result.total_blob_count:
        lines.append(("Total Blob Count", str(result.total_blob_count)))
    if result.total_file_count:
        lines.append(("Total File Count", str(result.total_file_count)))
    if result.total_uncompressed_size:
        lines.append(("Total Uncompressed Size", "%-5s" % format_bytes(result.total_uncompressed_size)))
    lines.append(("Total Size", "%-5s" % format_bytes(result.total_size)))
    if result.compression_progress > 0:
        lines.append(("Compression Progress", "%.2f%%" % result.compression_progress))
    if result.compression_ratio > 0:
        lines.append(("Compression Ratio", "%.2fx" % result.compression_ratio))
    if result.compression_space_saving > 0:
        lines.append(("Compression Space Saving", "%.2f%%" % result.compression_space_saving))
    width = _WIDE_LABEL_WIDTH if result.total_uncompressed_size else _LABEL_WIDTH
    out = [f"Stats in {result.mode} mode:\n"]
    out += [f"{label:>{width}}:   {value}\n" for label, value in lines]
    return "".join(out)
