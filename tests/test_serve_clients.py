"""restique serve's WebDAV share as real clients see it: davfs2 (`mount -t davfs`) and GNOME
Files (gvfs, driven through `gio`) mount it here; Windows Explorer (Microsoft-WebDAV-MiniRedir)
and macOS Finder (WebDAVFS) cannot run here, so their request shapes are replayed over HTTP.

One snapshot (written by the real restic) of a small tree with spaces, non-ASCII and
non-UTF-8 names and one larger file is served for the whole module."""
import email.utils
import grp
import hashlib
import http.client
import os
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

import pytest

from conftest import run_restic
from test_serve import regular_tree, start_server, stop_server

BIG_SIZE = 6 * 1024 * 1024 + 12345  # several read chunks, not a round number
NAMES = {  # relative path bytes: content
    b"small.txt": b"hello restique\n",
    b"empty.txt": b"",
    "café ü.txt".encode(): "déjà vu\n".encode(),
    b"caf\xe9 latin1.txt": b"not UTF-8\n",
    b"with space/a b.txt": b"spaces\n",
    "with space/sub dir/€uro (1) [x]#%&+.txt".encode(): b"reserved characters\n",
    "日本/ファイル.txt".encode(): b"CJK\n",
}
MINIREDIR = "Microsoft-WebDAV-MiniRedir/10.0.19045"
WEBDAVFS = "WebDAVFS/3.0.0 (03008000) Darwin/22.6.0 (arm64)"
DAV = "{DAV:}"


@pytest.fixture(scope="module")
def share(tmp_path_factory):
    """SimpleNamespace-like dict: source tree, snapshot folder path on the share, URL, process."""
    base = tmp_path_factory.mktemp("serve-clients")
    source = base / "data"
    for rel, content in NAMES.items():
        path = os.path.join(os.fsencode(source), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
    (source / "big.bin").write_bytes(os.urandom(BIG_SIZE))
    repo = base / "repo"
    run_restic(repo, "init")
    run_restic(repo, "backup", "data", cwd=base)
    snapshot_id = run_restic(repo, "snapshots", "--json").stdout.decode().split('"id":"')[1][:64]
    proc, url = start_server(repo)
    try:
        yield {"source": source, "folder": f"/dav/ids/{snapshot_id[:8]}/data", "url": url, "proc": proc}
    finally:
        if proc.poll() is None:
            stop_server(proc)


def assert_still_serving(share):
    assert share["proc"].poll() is None
    assert request(share, "GET", "/")[0] == 200


def source_bytes(share, rel: bytes) -> bytes:
    with open(os.path.join(os.fsencode(share["source"]), rel), "rb") as f:
        return f.read()


def request(share, method, path, body=None, headers=None):
    """(status, headers, body) of one request on a fresh connection."""
    host, port = share["url"].split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


# --- davfs2 -------------------------------------------------------------------------------

@pytest.fixture
def davfs_dir():
    """A folder for davfs2's configuration, cache and mount point. mount.davfs runs as the
    davfs2 user after mounting, which must reach the cache (pytest's folders are private),
    and it accepts a cache folder only when owned by the caller with group davfs2."""
    folder = Path(tempfile.mkdtemp(prefix="restique-davfs-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def davfs_config(folder: Path) -> Path:
    cache = folder / "cache"
    cache.mkdir()
    os.chown(cache, 0, grp.getgrnam("davfs2").gr_gid)
    os.chmod(cache, 0o775)
    secrets = folder / "secrets"
    secrets.write_text("")
    os.chmod(secrets, 0o600)
    conf = folder / "davfs2.conf"
    # ask_auth 0: never prompt; buf_size 64: Linux 6.16+ rejects davfs2's readdir replies
    # into the default 16 KiB buffer (EINVAL on every directory listing)
    conf.write_text(f"ask_auth 0\nuse_locks 0\nbuf_size 64\ncache_dir {cache}\nsecrets {secrets}\n")
    return conf


def test_davfs2_mounts_the_share(share, davfs_dir):
    mountpoint = davfs_dir / "mnt"
    mountpoint.mkdir()
    subprocess.run(["mount.davfs", "-o", f"ro,conf={davfs_config(davfs_dir)}", share["url"] + "/dav/",
                    str(mountpoint)], stdin=subprocess.DEVNULL, check=True, capture_output=True, timeout=30)
    try:
        assert sorted(os.listdir(mountpoint)) == ["hosts", "ids", "lost+found", "snapshots", "tags"]
        mounted = mountpoint / share["folder"][len("/dav/"):]
        assert regular_tree(mounted) == regular_tree(share["source"])
        for rel in list(NAMES) + [b"big.bin"]:
            st = os.stat(os.path.join(os.fsencode(mounted), rel))
            assert st.st_size == os.stat(os.path.join(os.fsencode(share["source"]), rel)).st_size
        with open(mounted / "big.bin", "rb") as f:  # a seek into the middle, as players do
            f.seek(BIG_SIZE // 2)
            assert f.read(4096) == source_bytes(share, b"big.bin")[BIG_SIZE // 2:][:4096]
        with pytest.raises(OSError):
            (mounted / "new.txt").write_bytes(b"x")
    finally:
        done = subprocess.run(["umount", str(mountpoint)], capture_output=True, timeout=60)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert_still_serving(share)


# --- GNOME Files (gvfs) ---------------------------------------------------------------------

@pytest.fixture
def session_bus():
    """A private D-Bus session bus (gvfs's daemons are started on it); the environment for gio."""
    started = subprocess.run(["dbus-daemon", "--session", "--fork", "--print-address=1", "--print-pid=1"],
                             capture_output=True, check=True, timeout=30).stdout.decode().split()
    address, pid = started[0], int(started[1])
    env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=address, GIO_USE_VFS="gvfs")
    yield env
    os.kill(pid, 15)


def gio(env, *args):
    return subprocess.run(["gio", *args], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          check=True, timeout=60).stdout


def test_gnome_files_mounts_the_share(share, session_bus, tmp_path):
    root = "dav" + share["url"][len("http"):] + "/dav/"
    gio(session_bus, "mount", root)
    try:
        folder = "dav" + share["url"][len("http"):] + quote(share["folder"]) + "/"
        listed = gio(session_bus, "list", "-u", "-l", "-a", "standard::size", folder).decode()
        rows = {line.split("\t")[0]: line.split("\t")[1:3] for line in listed.splitlines()}
        top = {rel.split(b"/")[0] for rel in NAMES} | {b"big.bin"}
        assert {unquote_to_bytes(uri[len(folder):]) for uri in rows} == top
        assert rows[folder + "big.bin"] == [str(BIG_SIZE), "(regular)"]
        assert rows[folder + "with%20space"][1] == "(directory)"
        for rel in list(NAMES) + [b"big.bin"]:
            target = tmp_path / hashlib.sha1(rel).hexdigest()
            gio(session_bus, "copy", folder + quote(rel), str(target))
            assert target.read_bytes() == source_bytes(share, rel), rel
    finally:
        gio(session_bus, "mount", "-u", root)
    assert_still_serving(share)


# --- Windows Explorer and macOS Finder, replayed over HTTP ----------------------------------

ALLPROP = b'<?xml version="1.0" encoding="utf-8" ?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'
# what Windows' mini-redirector asks when it lists a folder
MINIREDIR_PROPS = (b'<?xml version="1.0" encoding="utf-8" ?><D:propfind xmlns:D="DAV:"><D:prop>'
                   b'<D:creationdate/><D:displayname/><D:getcontentlength/><D:getcontenttype/><D:getetag/>'
                   b'<D:getlastmodified/><D:resourcetype/></D:prop></D:propfind>')
MINIREDIR_WIN32 = (b'<?xml version="1.0" encoding="utf-8" ?><D:propfind xmlns:D="DAV:" '
                   b'xmlns:Z="urn:schemas-microsoft-com:"><D:prop><D:getcontentlength/><D:resourcetype/>'
                   b'<Z:Win32CreationTime/><Z:Win32LastAccessTime/><Z:Win32LastModifiedTime/>'
                   b'<Z:Win32FileAttributes/></D:prop></D:propfind>')
# what Finder's WebDAVFS asks for a folder listing and for the volume's free space
WEBDAVFS_PROPS = (b'<?xml version="1.0" encoding="utf-8"?>\n<D:propfind xmlns:D="DAV:">\n<D:prop>\n'
                  b'<D:getlastmodified/>\n<D:getcontentlength/>\n<D:creationdate/>\n<D:resourcetype/>\n'
                  b'</D:prop>\n</D:propfind>\n')
WEBDAVFS_APPLEDOUBLE = (b'<?xml version="1.0" encoding="utf-8"?>\n<D:propfind xmlns:D="DAV:" '
                        b'xmlns:A="http://www.apple.com/webdav_fs/props/">\n<D:prop>\n<D:getlastmodified/>\n'
                        b'<D:getcontentlength/>\n<D:resourcetype/>\n<A:appledoubleheader/>\n</D:prop>\n</D:propfind>\n')
WEBDAVFS_QUOTA = (b'<?xml version="1.0" encoding="utf-8"?>\n<D:propfind xmlns:D="DAV:">\n<D:prop>\n'
                  b'<D:quota-available-bytes/>\n<D:quota-used-bytes/>\n<D:quota/>\n<D:quotaused/>\n'
                  b'</D:prop>\n</D:propfind>\n')
ISO_8601 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def propfind(share, path, depth, body=b"", agent=MINIREDIR):
    """{href: {property: (status code, element)}} of a PROPFIND that must answer 207."""
    headers = {"Depth": depth, "User-Agent": agent, "Content-Type": 'text/xml; charset="utf-8"'}
    status, _, raw = request(share, "PROPFIND", path, body, headers)
    assert status == 207, (path, status, raw[:300])
    found = {}
    for response in ET.fromstring(raw).iter(DAV + "response"):
        props = found.setdefault(response.find(DAV + "href").text, {})
        for propstat in response.iter(DAV + "propstat"):
            code = int(propstat.find(DAV + "status").text.split()[1])
            for prop in propstat.find(DAV + "prop"):
                props[prop.tag] = (code, prop)
    return found


def href_bytes(href: str) -> bytes:
    """The raw path an href names: ASCII only, every other byte percent-encoded."""
    assert href.isascii() and " " not in href, href
    return unquote_to_bytes(href)


def assert_well_formed(props, is_folder, size=None, mtime=None, name=None):
    assert props[DAV + "resourcetype"][0] == 200
    assert (props[DAV + "resourcetype"][1].find(DAV + "collection") is not None) == is_folder
    if DAV + "getlastmodified" in props:
        modified = email.utils.parsedate_to_datetime(props[DAV + "getlastmodified"][1].text)
        assert mtime is None or int(modified.timestamp()) == int(mtime)
    if DAV + "creationdate" in props:
        assert ISO_8601.match(props[DAV + "creationdate"][1].text)
    if is_folder:
        assert props.get(DAV + "getcontentlength", (404,))[0] == 404
    elif DAV + "getcontentlength" in props:
        assert props[DAV + "getcontentlength"] [0] == 200
        assert int(props[DAV + "getcontentlength"][1].text) == size
    if name is not None and DAV + "displayname" in props:
        # XML carries text only: a name that is not UTF-8 is shown with U+FFFD (the href is exact)
        assert props[DAV + "displayname"][1].text == name.decode("utf-8", "replace")


def test_options_announce_a_read_only_dav_share(share):
    for path in ("/", "/dav", "/dav/", share["folder"] + "/big.bin"):
        for agent in (MINIREDIR, WEBDAVFS):
            status, headers, _ = request(share, "OPTIONS", path, headers={"User-Agent": agent})
            assert status == 200, path
            classes = [c.strip() for c in headers["DAV"].split(",")]
            # no class 2 (locking): Finder then mounts read-only instead of failing on LOCK
            assert "1" in classes and "2" not in classes, headers["DAV"]
            assert headers["MS-Author-Via"] == "DAV"
            allowed = {m.strip() for m in headers["Allow"].split(",")}
            assert not allowed & {"PUT", "DELETE", "MKCOL", "LOCK", "PROPPATCH", "MOVE", "COPY"}, path
    status, headers, _ = request(share, "OPTIONS", "/dav/")
    assert "PROPFIND" in headers["Allow"]


@pytest.mark.parametrize("body", [b"", ALLPROP, MINIREDIR_PROPS, MINIREDIR_WIN32, WEBDAVFS_PROPS],
                         ids=["empty", "allprop", "miniredir", "win32", "webdavfs"])
def test_propfind_the_share_root(share, body):
    for path in ("/dav", "/dav/"):
        depth0 = propfind(share, path, "0", body)
        assert list(depth0) == ["/dav/"]
        assert_well_formed(depth0["/dav/"], is_folder=True)
        depth1 = propfind(share, path, "1", body)
        assert sorted(depth1) == ["/dav/", "/dav/hosts/", "/dav/ids/", "/dav/snapshots/", "/dav/tags/"]
        for props in depth1.values():
            assert_well_formed(props, is_folder=True)
            for name, (code, _) in props.items():
                if name.startswith("{urn:schemas-microsoft-com:}"):
                    assert code == 404  # unknown: answered as missing, not as an error


@pytest.mark.parametrize("body", [ALLPROP, MINIREDIR_PROPS, WEBDAVFS_PROPS], ids=["allprop", "miniredir", "webdavfs"])
def test_propfind_lists_every_name_exactly(share, body):
    """Every folder of the snapshot, depth 1, as Explorer and Finder walk it: hrefs encode the
    raw name bytes, sizes and times match the source."""
    source = os.fsencode(share["source"])
    prefix = share["folder"].encode()
    seen = set()
    for dirpath, dirnames, filenames in os.walk(source):
        rel = os.path.relpath(dirpath, source)
        folder = prefix + (b"" if rel == b"." else b"/" + rel) + b"/"
        listing = propfind(share, quote(folder), "1", body)
        expected = {folder} | {folder + d + b"/" for d in dirnames} | {folder + f for f in filenames}
        by_path = {href_bytes(href): props for href, props in listing.items()}
        assert set(by_path) == expected
        for path, props in by_path.items():
            local = source + path[len(prefix):]
            st = os.stat(local)
            assert_well_formed(props, path.endswith(b"/"), st.st_size, st.st_mtime, os.path.basename(local.rstrip(b"/")))
            seen.add(path)
    assert len(seen) == len(NAMES) + 1 + 4  # files, big.bin, folders (data, with space, sub dir, 日本)


def test_changes_are_refused(share):
    target = share["folder"] + "/small.txt"
    lockinfo = (b'<?xml version="1.0" encoding="utf-8"?>\n<D:lockinfo xmlns:D="DAV:">\n<D:lockscope><D:exclusive/>'
                b'</D:lockscope>\n<D:locktype><D:write/></D:locktype>\n<D:owner>\n<D:href>http://www.apple.com/webdav_fs/'
                b'</D:href>\n</D:owner>\n</D:lockinfo>\n')
    proppatch = (b'<?xml version="1.0" encoding="utf-8" ?><D:propertyupdate xmlns:D="DAV:" '
                 b'xmlns:Z="urn:schemas-microsoft-com:"><D:set><D:prop><Z:Win32LastModifiedTime>'
                 b'Wed, 02 Dec 2026 05:00:00 GMT</Z:Win32LastModifiedTime></D:prop></D:set></D:propertyupdate>')
    attempts = [("LOCK", target, lockinfo, {"Timeout": "Second-600", "Depth": "0", "User-Agent": WEBDAVFS}),
                ("LOCK", share["folder"] + "/new.txt", lockinfo, {"Timeout": "Second-600", "User-Agent": MINIREDIR}),
                ("PUT", share["folder"] + "/new.txt", b"x", {"User-Agent": MINIREDIR}),
                ("PUT", target, b"x", {"User-Agent": WEBDAVFS}),
                ("DELETE", target, None, {}),
                ("MKCOL", share["folder"] + "/new", None, {}),
                ("PROPPATCH", target, proppatch, {"User-Agent": MINIREDIR}),
                ("MOVE", target, None, {"Destination": share["url"] + share["folder"] + "/moved.txt"}),
                ("COPY", target, None, {"Destination": share["url"] + share["folder"] + "/copied.txt"}),
                ("UNLOCK", target, None, {"Lock-Token": "<opaquelocktoken:0>"})]
    for method, path, body, headers in attempts:
        status, answer, _ = request(share, method, path, body, headers)
        assert status == 405, (method, path, status)  # the method is not allowed on this share
        assert "PROPFIND" in answer["Allow"] and method not in answer["Allow"]
    assert source_bytes(share, b"small.txt") == request(share, "GET", target)[2]


def test_metadata_lookups_are_quick_404s(share):
    """Finder probes AppleDouble and Spotlight files, Explorer desktop.ini and Thumbs.db."""
    folders = ["/dav", share["folder"], share["folder"] + "/with%20space"]
    names = ["._.", ".DS_Store", "._small.txt", ".hidden", ".metadata_never_index", ".Spotlight-V100",
             "desktop.ini", "Thumbs.db"]
    started = time.monotonic()
    for folder in folders:
        for name in names:
            for method in ("PROPFIND", "GET", "HEAD"):
                status, _, _ = request(share, method, f"{folder}/{name}", headers={"Depth": "0", "User-Agent": WEBDAVFS})
                assert status == 404, (method, folder, name)
    assert time.monotonic() - started < 10  # 72 lookups: no walk of the repository behind them
    listing = propfind(share, share["folder"] + "/", "1", WEBDAVFS_APPLEDOUBLE, WEBDAVFS)
    for props in listing.values():
        assert props["{http://www.apple.com/webdav_fs/props/}appledoubleheader"][0] == 404


def test_free_space_is_zero_or_absent(share):
    """Finder asks the volume's quota; a read-only share has nothing free (or says nothing)."""
    props = propfind(share, "/dav/", "0", WEBDAVFS_QUOTA, WEBDAVFS)["/dav/"]
    for name in ("quota-available-bytes", "quota-used-bytes"):
        code, element = props[DAV + name]
        assert code == 404 or (code == 200 and element.text and element.text.isdigit()), (name, code)


def test_depth_infinity_is_refused(share):
    """A PROPFIND of the whole share would walk every snapshot: RFC 4918 lets a server refuse."""
    for headers in ({"Depth": "infinity"}, {}):
        status, _, body = request(share, "PROPFIND", "/dav/", ALLPROP, headers)
        assert status == 403 and b"propfind-finite-depth" in body


def test_range_reads_as_the_clients_send_them(share):
    content = source_bytes(share, b"big.bin")
    path = share["folder"] + "/big.bin"
    for agent, first, last in ((MINIREDIR, 0, 65535), (WEBDAVFS, 4 << 20, (4 << 20) + 131071),
                               (MINIREDIR, BIG_SIZE - 1000, BIG_SIZE - 1)):
        status, headers, body = request(share, "GET", path, headers={"Range": f"bytes={first}-{last}",
                                                                      "User-Agent": agent})
        assert status == 206 and body == content[first:last + 1]
        assert headers["Content-Range"] == f"bytes {first}-{last}/{BIG_SIZE}"
    status, headers, body = request(share, "HEAD", path, headers={"User-Agent": MINIREDIR})
    assert status == 200 and int(headers["Content-Length"]) == BIG_SIZE and body == b""
    assert headers["Accept-Ranges"] == "bytes"
    unicode_path = quote((share["folder"] + "/café ü.txt").encode())
    status, _, body = request(share, "GET", unicode_path, headers={"Range": "bytes=1-3"})
    assert status == 206 and body == "déjà vu\n".encode()[1:4]
    assert_still_serving(share)
