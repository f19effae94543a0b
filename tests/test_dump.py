"""`restique dump` against restic 0.14, on both repositories of the browse fixture.

Single files must come out byte for byte as restic prints them; folders and `/` as the same
tar and zip archives restic writes (byte-identical on the restic-made repository; on the
restique-made one the only difference is the link to a non-UTF-8 target, whose exact bytes
restique stores and reads back as current restic does, while restic 0.14 reads its lossy
text). GNU tar and Python's tarfile must list and extract them into the source tree. Errors
give restic's messages (with current restic's "Fatal: " and exit code 1 where 0.14 exits 2),
and a large file streams in flat memory.
"""
import functools
import hashlib
import io
import os
import pty
import stat
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from browse_fixtures import browse  # noqa: F401  (the session fixture)
from conftest import both, clean_env, restique_cmd, run_restic, run_restique

TOOLS = {"restic": run_restic, "restique": run_restique}
NON_UTF8_LINK = "tree/links/non-utf8-target"
NON_UTF8_TARGET = b"/tmp/\xff\xfe"
LOSSY_TARGET = "/tmp/\ufffd\ufffd"  # what restic 0.14 stores and reads for it
MIB = 1024 * 1024


def fs(name: bytes) -> str:
    """A raw file name as a command-line argument (subprocess encodes it back)."""
    return os.fsdecode(name)


@functools.lru_cache(maxsize=4)
def dumped(tool: str, repo: Path, *args: str) -> bytes:
    """stdout of a successful `dump` (the last few kept: several tests look at the same
    archive, and each is 20 MiB)."""
    return TOOLS[tool](repo, "--no-lock", "dump", *args).stdout  # side by side: no lock races


def dump_pair(browse, made_by: str, *args: str):
    """(restic's output, restique's output) of the same dump, run side by side."""
    repo = browse.repos[made_by]
    return tuple(both([(dumped, (tool, repo, *args), {}) for tool in TOOLS]))


def round_ns(ns: int) -> int:
    """Go's Round(time.Second) of a modification time, as tar headers hold it."""
    return (ns + 500_000_000) // 1_000_000_000


# --------------------------------------------------------------------------------------------
# single files


@pytest.mark.parametrize("made_by", TOOLS)
@pytest.mark.parametrize("name", [b"random20m.bin", b"empty.txt", b"caf\xe9.txt"])
def test_file_bytes(browse, made_by, name):
    restic_out, restique_out = dump_pair(browse, made_by, browse.first[made_by], fs(b"/tree/" + name))
    assert restique_out == restic_out
    source = browse.tree / fs(name)
    assert restique_out == (source.read_bytes() if source.exists() else b"")  # empty.txt is gone now


# --------------------------------------------------------------------------------------------
# archives: the same bytes as restic's


def tar_members(data: bytes) -> list:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m.name, m.type, m.mode, m.uid, m.gid, m.uname, m.gname, m.mtime, m.size, m.linkname,
                 m.pax_headers, tar.extractfile(m).read() if m.isfile() else None) for m in tar]


def gnu_listing(data: bytes) -> list:
    out = subprocess.run(["tar", "-tvf", "-"], input=data, capture_output=True, check=True,
                         env=dict(os.environ, LC_ALL="C", TZ="UTC")).stdout
    return out.splitlines()


def zip_members(data: bytes) -> list:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i.filename, i.date_time, i.compress_type, i.CRC, i.file_size, i.external_attr, i.create_system,
                 i.create_version, i.extract_version, i.flag_bits, i.extra, zf.read(i)) for i in zf.infolist()]


def without_non_utf8_link(members: list, made_by: str, tool: str) -> list:
    """The member list with the non-UTF-8 link target checked and set aside: restique reads
    its exact bytes (linktarget_raw, current restic), restic 0.14 the lossy text."""
    kept = []
    for member in members:
        if member[0] != NON_UTF8_LINK:
            kept.append(member)
            continue
        target = member[9] if len(member) == 12 and isinstance(member[9], str) else None
        if target is None:  # zip: the target is the content
            target = member[-1].decode("utf-8", "surrogateescape")
        expected = os.fsdecode(NON_UTF8_TARGET) if made_by == "restique" and tool == "restique" else LOSSY_TARGET
        assert target == expected, (tool, member)
    return kept


@pytest.mark.parametrize("made_by", TOOLS)
@pytest.mark.parametrize("path", ["/", "/tree", "/tree/nested"])
def test_tar_same_as_restic(browse, made_by, path):
    restic_tar, restique_tar = dump_pair(browse, made_by, browse.second[made_by], path)
    if made_by == "restic" or path == "/tree/nested":
        assert restique_tar == restic_tar  # byte for byte
    restic_members = tar_members(restic_tar)
    assert without_non_utf8_link(tar_members(restique_tar), made_by, "restique") == \
        without_non_utf8_link(restic_members, made_by, "restic")
    restic_lines, restique_lines = gnu_listing(restic_tar), gnu_listing(restique_tar)
    assert [line for line in restique_lines if b"non-utf8-target" not in line] == \
        [line for line in restic_lines if b"non-utf8-target" not in line]
    assert len(restique_lines) == len(restic_lines) == len(restic_members)


@pytest.mark.parametrize("made_by", TOOLS)
def test_zip_same_as_restic(browse, made_by):
    restic_zip, restique_zip = dump_pair(browse, made_by, "--archive", "zip", browse.second[made_by], "/")
    if made_by == "restic":
        assert restique_zip == restic_zip  # byte for byte
    assert without_non_utf8_link(zip_members(restique_zip), made_by, "restique") == \
        without_non_utf8_link(zip_members(restic_zip), made_by, "restic")


def test_tar_headers_as_restic_writes_them(browse):
    """What the identical bytes mean: PAX for names, links and xattrs that USTAR cannot
    hold, whole seconds, special files at the top of the folder as empty regular files,
    hard links as two files, no access or change times."""
    members = {m[0]: m for m in tar_members(dumped("restique", browse.repos["restique"], browse.second["restique"],
                                                   "/tree"))}
    assert members["tree/xattr.txt"][10] == {"SCHILY.xattr.user.test": "v",
                                            "SCHILY.xattr.user.binary": "\x00\udcff\x01"}
    assert members[fs(b"tree/caf\xe9.txt")][10] == {"path": fs(b"tree/caf\xe9.txt")}
    assert members["tree/links/relative"][1] == tarfile.REGTYPE  # a file in the second snapshot
    for name in ("tree/fifo", "tree/chardev"):
        assert members[name][1] == tarfile.REGTYPE and members[name][8] == 0
    assert members["tree/hardlink-1.txt"][11] == members["tree/hardlink-2.txt"][11] == b"linked content\n"
    assert members["tree/setuid.sh"][2] == 0o4755 and members["tree/sticky"][2] == 0o1777
    assert members["tree/nested/a/other.txt"][3:7] == (4242, 4242, "", "")
    source_ns = os.lstat(browse.tree / "small.txt").st_mtime_ns
    assert members["tree/small.txt"][7] == round_ns(source_ns)
    assert not any("atime" in m[10] or "ctime" in m[10] for m in members.values())


def build_edge_tree(root: Path) -> None:
    """Entries that need Go's rarer header forms: long names split into USTAR's prefix or
    moved to PAX (one whose ASCII-only form, cut to 100 bytes, ends in a slash), long and
    non-ASCII link targets, ids and times beyond the octal fields, times on the half second,
    POSIX ACLs (PAX SCHILY.acl.access/default text)."""
    def write(rel: str) -> str:
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Path(path).write_bytes(b"x\n")
        return path

    write("d" * 60 + "/" + "e" * 60 + "/split.txt")
    write("n" * 120)
    write("/".join(["g" * 50] * 5) + "/deep.txt")
    write("x" * 100)
    os.makedirs(os.path.join(root, "y" * 99, "z" * 100))
    write("\u00e9" + "a" * 95 + "/" + "b" * 10)
    os.chown(write("owner.txt"), 3_000_000, 5_000_000)
    for name, ns in (("old.txt", -315_619_200_250_000_000), ("future.txt", 10_000_000_000_500_000_000),
                     ("half.txt", 1_600_000_000_500_000_000), ("below-half.txt", 1_600_000_000_499_999_999)):
        os.utime(write(name), ns=(0, ns))
    os.symlink("t" * 150, os.path.join(root, "longlink"))
    os.symlink("/tmp/caf\u00e9", os.path.join(root, "utf8link"))
    os.setxattr(write("q" * 110 + ".x"), "user.k", b"v" * 300)
    # POSIX ACLs (Linux's binary xattr form): owner rw-, user 1000 r--, group r--, mask r--, other ---
    acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, ident) for tag, perm, ident in (
        (0x01, 6, 0xFFFFFFFF), (0x02, 4, 1000), (0x04, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)))
    os.setxattr(write("acl/file.txt"), "system.posix_acl_access", acl)
    os.setxattr(os.path.join(root, "acl"), "system.posix_acl_default", acl)


def test_rare_headers_same_as_restic(tmp_path):
    build_edge_tree(tmp_path / "src")
    repo = tmp_path / "repo"
    run_restic(repo, "init")
    run_restic(repo, "backup", "src", cwd=tmp_path)
    outputs = {}
    for archive in ("tar", "zip"):
        restic, restique = both([(fn, (repo, "--no-lock", "dump", "--archive", archive, "latest", "/"), {})
                                 for fn in TOOLS.values()])
        assert restique.stdout == restic.stdout, archive
        outputs[archive] = restique.stdout
    with tarfile.open(fileobj=io.BytesIO(outputs["tar"])) as tar:
        pax = {m.name: m.pax_headers for m in tar}
    acl_text = "user::rw-\nuser:1000:r--\ngroup::r--\nmask::r--\nother::---\n"
    assert pax["src/acl/file.txt"] == {"SCHILY.acl.access": acl_text}
    assert pax["src/acl"] == {"SCHILY.acl.default": acl_text}
    assert pax["src/" + "n" * 120] == {"path": "src/" + "n" * 120}
    assert pax["src/owner.txt"] == {"uid": "3000000", "gid": "5000000"}


# --------------------------------------------------------------------------------------------
# what GNU tar, tarfile and zipfile extract


def source_entries(root: Path):
    """(relative bytes path, lstat) of everything below root."""
    rootb = os.fsencode(root)
    for dirpath, dirs, files in os.walk(rootb):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            yield os.path.relpath(path, rootb), os.lstat(path)


def check_extracted(dest: Path, source: Path, made_by: str, xattrs: bool) -> None:
    destb = os.fsencode(dest / "tree")
    for rel, st in source_entries(source):
        where = os.path.join(destb, rel)
        got = os.lstat(where)
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode):  # restic writes them as empty files
            assert stat.S_ISREG(got.st_mode) and got.st_size == 0, rel
        elif stat.S_ISLNK(st.st_mode):
            target = os.readlink(os.path.join(os.fsencode(source), rel))
            if target == NON_UTF8_TARGET and made_by == "restic":
                target = LOSSY_TARGET.encode()
            assert os.readlink(where) == target, rel
            continue
        else:
            assert stat.S_IFMT(got.st_mode) == stat.S_IFMT(st.st_mode), rel
        assert stat.S_IMODE(got.st_mode) == stat.S_IMODE(st.st_mode), rel
        assert (got.st_uid, got.st_gid) == (st.st_uid, st.st_gid), rel
        assert got.st_mtime_ns == round_ns(st.st_mtime_ns) * 1_000_000_000, rel
        if stat.S_ISREG(st.st_mode):
            with open(os.path.join(os.fsencode(source), rel), "rb") as f:
                assert open(where, "rb").read() == f.read(), rel
    assert sorted(os.listdir(destb)) == sorted(os.listdir(os.fsencode(source)))
    if xattrs:
        assert os.getxattr(os.path.join(destb, b"xattr.txt"), "user.binary") == b"\x00\xff\x01"


@pytest.mark.parametrize("made_by", TOOLS)
def test_tar_extracts_the_source_tree(browse, made_by, tmp_path):
    archive = tmp_path / "tree.tar"
    run_restique(browse.repos[made_by], "dump", "--target", archive, browse.second[made_by], "/tree")
    assert archive.read_bytes() == dumped("restique", browse.repos[made_by], browse.second[made_by], "/tree")
    gnu, python = tmp_path / "gnu", tmp_path / "python"
    gnu.mkdir()
    subprocess.run(["tar", "-xpf", archive, "--xattrs", "--xattrs-include=*", "-C", gnu], check=True)
    check_extracted(gnu, browse.tree, made_by, xattrs=True)
    with tarfile.open(archive) as tar:
        tar.extractall(python, filter="fully_trusted")
    check_extracted(python, browse.tree, made_by, xattrs=False)


@pytest.mark.parametrize("made_by", TOOLS)
def test_zip_extracts_the_source_tree(browse, made_by):
    data = dumped("restique", browse.repos[made_by], "--archive", "zip", browse.second[made_by], "/tree")
    source = os.fsencode(browse.tree)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        names = {}
        for info in infos:
            raw = info.filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
            names[raw.rstrip(b"/")] = info
        expected = {b"tree/" + rel for rel, _ in source_entries(browse.tree)}
        assert set(names) == expected
        for rel, st in source_entries(browse.tree):
            info = names[b"tree/" + rel]
            mode = info.external_attr >> 16
            assert mode == st.st_mode, rel
            content = zf.read(info)
            if stat.S_ISREG(st.st_mode):
                assert content == open(os.path.join(source, rel), "rb").read(), rel
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(os.path.join(source, rel))
                assert content == (LOSSY_TARGET.encode() if target == NON_UTF8_TARGET and made_by == "restic"
                                   else target), rel
            else:
                assert content == b"", rel


# --------------------------------------------------------------------------------------------
# current restic's additions: --target, ID:subfolder


def test_target_and_subfolder(browse, tmp_path):
    repo, sid = browse.repos["restique"], browse.second["restique"]
    target = tmp_path / "one.bin"
    proc = run_restique(repo, "dump", "-t", target, sid, "/tree/random20m.bin")
    assert proc.stdout == b"" and target.read_bytes() == (browse.tree / "random20m.bin").read_bytes()
    # ID:subfolder puts the folder's content at the root of the archive
    whole = tar_members(dumped("restique", repo, sid, "/tree"))
    inner = tar_members(run_restique(repo, "dump", f"{sid}:tree", "/").stdout)
    assert [(m[0][len("tree/"):],) + m[1:10] + m[11:] for m in whole] == [m[:10] + m[11:] for m in inner]
    proc = run_restique(repo, "dump", "--target", tmp_path / "no" / "such" / "dir", sid, "/tree", check=False)
    assert proc.returncode == 1 and proc.stdout == b""
    assert proc.stderr.decode() == f"cannot dump to file: open {tmp_path}/no/such/dir: no such file or directory\n"


# --------------------------------------------------------------------------------------------
# errors: restic's messages


ERRORS = {
    "unknown snapshot": ["deadbeef", "/tree/small.txt"],
    "latest without match": ["--tag", "nosuch", "--path", "/x", "latest", "/tree/small.txt"],
    "path not found": ["SID", "/tree/nope"],
    "fifo": ["SID", "/tree/fifo"],
    "file as a folder": ["SID", "/tree/small.txt/x"],
    "unknown archive format": ["--archive", "7z", "SID", "/tree"],
    "no path": ["SID"],
}


@pytest.mark.parametrize("case", ERRORS)
def test_errors_as_restic(browse, case):
    args = [browse.second["restic"] if a == "SID" else a for a in ERRORS[case]]
    restic, restique = both([(fn, (browse.repos["restic"], "--no-lock", "dump", *args), {"check": False})
                             for fn in TOOLS.values()])
    assert restique.stdout == b"" and restic.stdout == b""
    assert restique.returncode == 1
    assert restic.stderr.strip() and restique.stderr.count(b"\n") == 1
    if restic.returncode == 2:  # restic 0.14's Exitf(2, ...); current restic: Fatal, exit 1
        assert restique.stderr == b"Fatal: " + restic.stderr
    else:
        assert (restique.returncode, restique.stderr) == (restic.returncode, restic.stderr)


def run_on_terminal(cmd, repo, *args):
    """(exit code, stdout, stderr) with stdout a pseudo-terminal."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([*cmd, "-r", str(repo), *args], stdout=slave, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, env=clean_env(), timeout=120)
    finally:
        os.close(slave)
    out = b""
    try:
        while chunk := os.read(master, 65536):
            out += chunk
    except OSError:  # EIO: the terminal is closed and drained
        pass
    os.close(master)
    return proc.returncode, out, proc.stderr


def test_no_archive_to_a_terminal(browse):
    repo, sid = browse.repos["restic"], browse.second["restic"]
    code, out, err = run_on_terminal(restique_cmd(), repo, "dump", sid, "/tree")
    restic_code, _, restic_err = run_on_terminal(["restic"], repo, "dump", sid, "/tree")
    assert code == 1 and restic_code == 2 and b"ustar" not in out  # out: only "repository ... opened"
    assert err == b"Fatal: " + restic_err == b"Fatal: cannot dump file: stdout is the terminal, please redirect output\n"
    code, out, err = run_on_terminal(restique_cmd(), repo, "dump", sid, "/tree/small.txt")
    assert code == 0 and out.replace(b"\r\n", b"\n").endswith((browse.tree / "small.txt").read_bytes())


# --------------------------------------------------------------------------------------------
# damaged data, streaming


def damage_blob(repo: Path, blob_id: str) -> None:
    from conftest import PASSWORD
    from restique.repository.repository import open_repository

    with open_repository(str(repo), PASSWORD) as r:
        loc = r.load_index().lookup("data", blob_id)
    pack = next(repo.glob(f"data/*/{loc.pack_id}"))
    pack.chmod(0o644)
    with open(pack, "r+b") as f:
        f.seek(loc.offset + 20)
        byte = f.read(1)
        f.seek(loc.offset + 20)
        f.write(bytes([byte[0] ^ 1]))


def test_damaged_blob(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "good.txt").write_bytes(b"good\n")
    (src / "bad.txt").write_bytes(b"this blob will be damaged\n")
    repo = tmp_path / "repo"
    run_restic(repo, "init")  # restic's key is the cheaper one to open, three times here
    run_restic(repo, "backup", "src", cwd=tmp_path)
    blob_id = hashlib.sha256(b"this blob will be damaged\n").hexdigest()
    damage_blob(repo, blob_id)
    message = f"cannot dump file: decrypting blob {blob_id} failed: ciphertext verification failed\n".encode()
    restic, restique = both([(fn, (repo, "--no-lock", "dump", "latest", "/src/bad.txt"), {"check": False})
                             for fn in TOOLS.values()])
    assert (restic.returncode, restic.stderr) == (2, message)
    assert (restique.returncode, restique.stderr) == (1, b"Fatal: " + message)
    archive = run_restique(repo, "dump", "latest", "/src", check=False)  # fails in the middle of the archive
    assert (archive.returncode, archive.stderr) == (1, b"Fatal: " + message)


def sparse_content(size: int):
    """A file that is mostly holes but has a distinct line every MiB, so that it is many
    different blobs that compress to almost nothing."""
    for offset in range(0, size, MIB):
        mark = b"block %10d\n" % (offset // MIB)
        yield mark + bytes(min(MIB, size - offset) - len(mark))


MEASURE = """
import hashlib, resource, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
digest, size = hashlib.sha256(), 0
while chunk := proc.stdout.read(1 << 20):
    digest.update(chunk)
    size += len(chunk)
code = proc.wait()
print(code, size, digest.hexdigest(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def test_large_file_streams_in_flat_memory(tmp_path):
    size = 256 * MIB
    src = tmp_path / "src"
    src.mkdir()
    digest = hashlib.sha256()
    with open(src / "big.bin", "wb") as f:
        for offset, block in zip(range(0, size, MIB), sparse_content(size)):
            digest.update(block)
            f.seek(offset)
            f.write(block.rstrip(b"\0"))
        f.truncate(size)
    repo = tmp_path / "repo"
    run_restic(repo, "init")
    run_restic(repo, "backup", "src", cwd=tmp_path)
    out = subprocess.run([sys.executable, "-c", MEASURE, *restique_cmd(), "-r", str(repo), "dump", "latest",
                          "/src/big.bin"], capture_output=True, check=True, env=clean_env()).stdout
    code, length, hexdigest, max_rss_kib = out.split()
    assert (int(code), int(length), hexdigest.decode()) == (0, size, digest.hexdigest())
    assert int(max_rss_kib) * 1024 < 120 * MIB, f"peak RSS {int(max_rss_kib) // 1024} MiB for a 256 MiB file"
