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
