"""`serve`: the snapshots over HTTP, as WebDAV under /dav/ (read-only, mountable by file
managers, davfs2 and rclone) and as a web page for people (browse, download files with
ranges and folders as tar or zip, find).

    from restique.serve import ServeApp, Server, ServerOptions
    app = ServeApp(repo, SnapshotFS(repo, SnapshotFSOptions()))
    server = Server(app, ServerOptions(addr="127.0.0.1:8080"))
    server.start(); server.serve()

Needs the optional packages wsgidav and cheroot (`pip install restique[serve]`).
"""
