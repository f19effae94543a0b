"""restique mount: browse the snapshots as a read-only FUSE filesystem."""
import os
import sys

import click

from .options import snapshot_filter_options
from .output import print_warning


_HELP = """Mount the repository.

The "mount" command mounts the repository via fuse to a directory. This is a read-only
mount.

\b
Snapshot Directories
====================

If you need a different template for directories that contain snapshots, you can pass
a time template via --time-template and path templates via --path-template.

\b
Example time template without colons:
    --time-template "2006-01-02_15-04-05"

\b
You need to specify a sample format for exactly the following timestamp:
    Mon Jan 2 15:04:05 -0700 MST 2006

\b
For path templates, you can use the following patterns which will be replaced:
    %i by short snapshot ID
    %I by long snapshot ID
    %u by username
    %h by hostname
    %t by tags
    %T by timestamp as specified by --time-template

\b
The default path templates are:
    "ids/%i"
    "snapshots/%T"
    "hosts/%h/%T"
    "tags/%t/%T"

New snapshots show up within 5 seconds. Quit with Ctrl-c (or SIGTERM), or unmount the
mountpoint (fusermount3 -u); both unmount and release the repository lock.

Exit status is 0 if the command was successful, 1 if there was any error, 10 if the
repository does not exist, 11 if it is locked, 12 if the password is wrong, 130 after
Ctrl-c and 143 after SIGTERM.
"""


@click.command(help=_HELP)
@click.argument("args", nargs=-1)
@click.option("--allow-other", is_flag=True, help="allow other users to access the data in the mounted directory")
@click.option("--no-default-permissions", is_flag=True,
              help="for 'allow-other', ignore Unix permissions and allow users to read all snapshot files")
@click.option("--owner-root", is_flag=True, help="use 'root' as the owner of files and dirs")
@click.option("--path-template", "path_templates", multiple=True, metavar="template",
              help="set template for path names (can be specified multiple times)")
@click.option("--time-template", "--snapshot-template", "time_template", default="2006-01-02T15:04:05Z07:00",
              metavar="template", help='set template to use for times (default "2006-01-02T15:04:05Z07:00")')
@snapshot_filter_options()
@click.pass_obj
def mount(opts, args, allow_other, no_default_permissions, owner_root, path_templates, time_template,
          snapshot_filter):
    mountpoint = _checked_arguments(args, time_template)
    from ..operations.snapshot_fs import SnapshotFS, SnapshotFSOptions

    repo = opts.open_for_reading()
    fs = SnapshotFS(repo, SnapshotFSOptions(
        path_template=list(path_templates) or None, time_template=time_template,
        filter=snapshot_filter.filter(), owner_root=owner_root, on_warning=print_warning))
    try:  # a signal's exception (Ctrl-c, SIGTERM) unmounts and ends the command as usual
        _serve(fs, mountpoint, f"restique:{repo.config.id[:10]}", allow_other, no_default_permissions)
    finally:
        fs.close()


def _checked_arguments(args, time_template: str) -> str:
    """The mountpoint, once the arguments and FUSE support are known to be usable."""
    from ..errors import RestiqueError
    from ..mount import fuse_missing

    if not time_template:
        raise RestiqueError("time template string cannot be empty")
    if time_template.startswith("/") or time_template.endswith("/"):
        raise RestiqueError("time template string cannot start or end with '/'")
    if len(args) != 1:
        raise RestiqueError("wrong number of parameters")
    _check_mountpoint(args[0])
    missing = fuse_missing()
    if missing:
        raise RestiqueError(missing)
    return args[0]


def _serve(fs, mountpoint: str, fsname: str, allow_other: bool, no_default_permissions: bool) -> None:
    """Serve until unmounted (or a signal's exception)."""
    from ..mount.runner import mount_options, serve

    def announce():
        print(f"Now serving the repository at {mountpoint}")
        print("Use another terminal or tool to browse the contents of this folder.")
        print("When finished, quit with Ctrl-c here or umount the mountpoint.")
        sys.stdout.flush()

    serve(fs, mountpoint, mount_options(fsname, allow_other, no_default_permissions), announce)


def _check_mountpoint(mountpoint: str) -> None:
    from ..errors import RestiqueError

    if not os.path.exists(mountpoint):
        raise RestiqueError(f"mountpoint {mountpoint} does not exist")
    if not os.path.isdir(mountpoint):
        raise RestiqueError(f"mountpoint {mountpoint} is not a directory")
    if os.path.ismount(mountpoint) and not os.access(mountpoint, os.R_OK):
        raise RestiqueError(f"mountpoint {mountpoint} is inaccessible")

