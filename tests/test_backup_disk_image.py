"""Backing up a disk image from a command's output (`backup --stdin-from-command`).

A 1 GiB sparse ext4 image gets a few MiB of files (written with debugfs, no mount needed),
is backed up with `restique backup --stdin-from-command --stdin-filename disk.img -- cat IMG`,
changed (another few MiB file) and backed up again. Both snapshots must restore (with restic
and with restique) to byte-identical images that e2fsck accepts, and the second backup must
only add about the changed data, not the whole image.
"""
import hashlib
import json
import os
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from conftest import run_program, run_restic as restic, run_restique as restique

MiB = 1 << 20
GiB = 1 << 30


def tool(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not path:
        pytest.fail(f"{name} (e2fsprogs) is needed by this test but is not installed")
    return path


def digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return h.hexdigest()


def debugfs_write(img, files: dict, workdir):
    """Write {name: content} into the ext4 image's root directory with debugfs."""
    cmds = []
    for name, content in files.items():
        src = workdir / f"src-{name}"
        src.write_bytes(content)
        cmds.append(f"write {src} {name}")
    script = workdir / "debugfs.cmds"
    script.write_text("\n".join(cmds) + "\n")
    run_program([tool("debugfs"), "-w", "-f", script, img])
    for name in files:
        (workdir / f"src-{name}").unlink()


def summary(proc) -> dict:
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    assert lines, f"no --json output:\nstderr: {proc.stderr!r}"
    last = json.loads(lines[-1])
    assert last.get("message_type") == "summary", lines[-1]
    return last


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    base = tmp_path_factory.mktemp("disk-image")
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(base / "cache"))
    img = base / "disk.img"
    with open(img, "wb") as f:
        f.truncate(GiB)  # sparse
    run_program([tool("mkfs.ext4"), "-q", "-F", img])
    rnd = random.Random(2024)
    debugfs_write(img, {f"file{i}.bin": rnd.randbytes(3 * MiB) for i in range(3)}, base)
    fsck = run_program([tool("e2fsck"), "-fn", img], check=False)
    assert fsck.returncode == 0, f"the test's own image is not clean: {fsck.stdout.decode()}"

    repo = base / "repo"
    restic(repo, "init")
    backup = ["backup", "--json", "--stdin-from-command", "--stdin-filename", "disk.img", "--", "cat", img]
    with ThreadPoolExecutor(2) as pool:  # hash the image while it is being backed up
        sha1 = pool.submit(digest, img)
        first = restique(repo, *backup)
        sha1 = sha1.result()
    debugfs_write(img, {"changed.bin": rnd.randbytes(4 * MiB)}, base)
    with ThreadPoolExecutor(2) as pool:
        sha2 = pool.submit(digest, img)
        second = restique(repo, *backup)
        sha2 = sha2.result()
    assert sha1 != sha2
    img.unlink()  # only the hashes are needed from here on
    yield SimpleNamespace(base=base, repo=repo, first=first, second=second,
                          ids=[summary(first)["snapshot_id"], summary(second)["snapshot_id"]],
                          shas=[sha1, sha2])
    mp.undo()


def check_restored(restore, repo, disk, target):
    """Restore both snapshots (in parallel) and check each image: sha256 and e2fsck -fn."""
    def one(i):
        dest = target / f"snap{i}"
        proc = restore(repo, disk.ids[i], dest)
        assert proc.returncode == 0, f"restore of snapshot {disk.ids[i]} exited {proc.returncode}: {proc.stderr!r}"
        restored = dest / "disk.img"
        assert restored.is_file(), f"no disk.img in the restored snapshot: {os.listdir(dest)}"
        assert restored.stat().st_size == GiB
        sha = digest(restored)
        fsck = run_program([tool("e2fsck"), "-fn", restored], check=False)
        restored.unlink()
        return sha, fsck

    try:
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(one, [0, 1]))
    finally:
        shutil.rmtree(target, ignore_errors=True)
    for i, (sha, fsck) in enumerate(results):
        assert sha == disk.shas[i], f"image of backup {i + 1} ({disk.ids[i]}) is not byte-identical after restore"
        assert fsck.returncode == 0, f"e2fsck -fn on restored image {i + 1}: {fsck.returncode}\n{fsck.stdout.decode()}"


def test_backups_of_the_image(disk):
    s1, s2 = summary(disk.first), summary(disk.second)
    for s in (s1, s2):
        assert s["files_new"] == 1 and s["total_bytes_processed"] == GiB, s
    snaps = json.loads(restic(disk.repo, "snapshots", "--json", "--no-lock").stdout)
    assert [s["paths"] for s in snaps] == [["/disk.img"], ["/disk.img"]], snaps
    assert [s["id"][:8] for s in snaps] == [i[:8] for i in disk.ids]
    ls = restic(disk.repo, "ls", "--no-lock", disk.ids[1]).stdout.splitlines()[1:]
    assert ls == [b"/disk.img"], ls


def test_second_backup_adds_only_the_change(disk):
    """The image is 1 GiB, the change 4 MiB: only a few MiB may be added."""
    s1, s2 = summary(disk.first), summary(disk.second)
    assert s1["data_added"] < 64 * MiB, f"first backup of a mostly empty 1 GiB image added too much: {s1}"
    assert s2["data_added"] < 32 * MiB, f"second backup added {s2['data_added'] / MiB:.1f} MiB: {s2}"


def test_restic_restores_both_images(disk):
    check_restored(lambda repo, sid, dest: restic(repo, "restore", sid, "--target", dest, check=False),
                   disk.repo, disk, disk.base / "restic-restore")


def test_restique_restores_both_images(disk):
    check_restored(lambda repo, sid, dest: restique(repo, "restore", sid, "--target", dest, check=False),
                   disk.repo, disk, disk.base / "restique-restore")
