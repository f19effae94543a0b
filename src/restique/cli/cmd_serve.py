"""restique serve: browse and download the snapshots over HTTP (WebDAV and a web page)."""
import click

from .options import snapshot_filter_options
from .output import print_warning

INSTALL_HINT = "restique serve needs wsgidav and cheroot: pip install restique[serve]"


@click.command()
@click.option("--addr", default="127.0.0.1:8080", show_default=True, metavar="host:port",
              help="address to listen on (:port for every interface)")
@click.option("--htpasswd", "htpasswd_file", metavar="file",
              help="require a user and password from this htpasswd file ({SHA} or bcrypt entries)")
@click.option("--insecure-no-auth", is_flag=True,
              help="allow a non-loopback address without authentication (anyone can read the backups)")
@click.option("--tls-cert", metavar="file", help="serve HTTPS with this certificate (PEM)")
@click.option("--tls-key", metavar="file", help="the private key of --tls-cert (PEM)")
@click.option("--path-template", "path_templates", multiple=True, metavar="template",
              help="set template for path names (can be specified multiple times)")
@click.option("--time-template", metavar="template",
              help="set template to use for times (default: 2006-01-02T15:04:05Z07:00)")
@snapshot_filter_options()
@click.pass_obj
def serve(opts, addr, htpasswd_file, insecure_no_auth, tls_cert, tls_key, path_templates,
          time_template, snapshot_filter):
    """Serve the repository's snapshots over HTTP.

    The snapshots are a read-only WebDAV share under /dav/ (for Windows Explorer, macOS
    Finder, GNOME Files, davfs2 or rclone) and a web page at / to browse them, download
    files (resumable) and folders (as .tar or .zip) and find files across snapshots.

    Without --htpasswd the server only listens on a loopback address, unless
    --insecure-no-auth is given.

    Ctrl-C or SIGTERM stop the server and release the lock (exit status 130 or 143, as
    mount); an error exits with 1.
    """
    import sys

    from ..errors import UsageError

    try:
        import cheroot  # noqa: F401
        import wsgidav  # noqa: F401
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    from ..operations.snapshot_fs import SnapshotFS, SnapshotFSOptions
    from ..serve.app import ServeApp
    from ..serve.auth import BasicAuth, Htpasswd
    from ..serve.server import Server, ServerOptions, check_options

    options = ServerOptions(addr=addr, tls_cert=tls_cert, tls_key=tls_key,
                            authenticated=bool(htpasswd_file), insecure_no_auth=insecure_no_auth)
    check_options(options)  # refuse before asking for a password
    users = Htpasswd(htpasswd_file) if htpasswd_file else None
    repo = opts.open_for_reading()
    fs = SnapshotFS(repo, SnapshotFSOptions(path_template=list(path_templates) or None,
                                            time_template=time_template,
                                            filter=snapshot_filter.filter(), on_warning=print_warning))
    app = ServeApp(repo, fs)
    server = Server(BasicAuth(app, users) if users else app, options)
    try:
        server.start()
        if not opts.quiet:
            print(f"Serving the snapshots on {server.url} (WebDAV at {server.url}dav/); "
                  "press Ctrl-C to stop", flush=True)
        server.serve()  # until Ctrl-C or SIGTERM, which unwind to here (exit 130 or 143, as mount)
    finally:
        server.stop()
        close = getattr(fs, "close", None)
        if close is not None:
            close()
    sys.stdout.flush()

