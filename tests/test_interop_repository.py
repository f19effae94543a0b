"""Interoperability of restique's foundation commands with the real restic.

restic is the oracle: repositories written by one program must be readable by the other, and
restique's `cat`/`list`/`key` output must match restic's byte for byte where restic's is
deterministic.

Every restic/restique invocation costs ~0.5-1 s of scrypt key derivation, so repositories are
shared per module where the tests only read them, and copied (shutil.copytree) where a test
needs a fresh repository to modify.
"""
import hashlib
import json
import os
import random
import re
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from conftest import PASSWORD, clean_env, run_restic, run_restique

INIT_NOTE = (
    b"\n"
    b"Please note that knowledge of your password is required to access\n"
    b"the repository. Losing your password means that your data is\n"
    b"irrecoverably lost.\n"
)

HEX64 = re.compile(rb"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------------------------
# helpers and fixtures



def lines(out: bytes):
    """Non-empty output lines, as str."""
    return [l for l in out.decode().splitlines() if l.strip()]


def sorted_lines(out: bytes):
    return sorted(lines(out))


def parallel(calls):
    """Run independent oracle (restic) commands concurrently; results in order.
    Used only to gather restic's view of a repository, never for the command under test."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as ex:
        return list(ex.map(lambda call: call(), calls))


def repo_copy(src, dst):
    """A copy of a repository (same repository id, hence sharing the cache; that is fine)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def write_password_file(path, password):
    path.write_text(password + "\n")
    return path


def key_list_json(runner, repo, password=PASSWORD):
    proc = runner(repo, "key", "list", "--json", env=clean_env(RESTIC_PASSWORD=password))
    try:
        return json.loads(proc.stdout)
    except ValueError as exc:  # pragma: no cover - diagnostic only
        raise AssertionError(f"`key list --json` printed invalid JSON {proc.stdout!r}") from exc


def opens_with(repo, password, runner=run_restic):
    """Whether `cat config` works with the given password; returns the CompletedProcess."""
    return runner(repo, "cat", "config", env=clean_env(RESTIC_PASSWORD=password), check=False)


@pytest.fixture(scope="module")
def fresh_restic_repo(tmp_path_factory, private_cache):
    """One restic-initialised (format 2) repository per module; tests copy it before writing."""
    repo = tmp_path_factory.mktemp("fresh") / "repo"
    run_restic(repo, "init")
    return repo


# --------------------------------------------------------------------------------------------
# 1. restique init -> restic reads it


@pytest.mark.parametrize("version", [1, 2])
def test_restique_init_is_readable_by_restic(tmp_path, version):
    repo = tmp_path / f"repo-v{version}"
    proc = run_restique(repo, "init", "--repository-version", str(version))

    # stdout wording is restic's
    m = re.match(rb"^created restic repository ([0-9a-f]{10}) at (.*)\n", proc.stdout)
    assert m, f"unexpected init output {proc.stdout!r}"
    assert m.group(2) == str(repo).encode(), f"repository path not echoed as given: {proc.stdout!r}"
    assert proc.stdout[m.end():] == INIT_NOTE, f"init's trailing note differs: {proc.stdout!r}"
    short_id = m.group(1).decode()

    # on-disk layout as restic's init leaves it
    assert sorted(os.listdir(repo)) == ["config", "data", "index", "keys", "locks", "snapshots"]
    assert sorted(os.listdir(repo / "data")) == [f"{i:02x}" for i in range(256)], (
        "init must create all 256 data/XX directories"
    )
    keys = os.listdir(repo / "keys")
    assert len(keys) == 1, f"expected exactly one key file, got {keys}"
    key_bytes = (repo / "keys" / keys[0]).read_bytes()
    assert hashlib.sha256(key_bytes).hexdigest() == keys[0], "key file name must be its SHA-256"
    for f in (repo / "config", repo / "keys" / keys[0]):
        assert stat.S_IMODE(f.stat().st_mode) == 0o400, f"{f} should be read-only (0400)"
    for d in ("data", "index", "keys", "locks", "snapshots"):
        assert stat.S_IMODE((repo / d).stat().st_mode) == 0o700, f"{d}/ should be 0700"
    assert os.listdir(repo / "locks") == [], "init must not leave a lock behind"

    # restic accepts the repository
    check = run_restic(repo, "check")
    assert b"no errors were found" in check.stdout, check.stdout

    restic_config = run_restic(repo, "cat", "config").stdout
    restique_config = run_restique(repo, "cat", "config").stdout
    cfg = json.loads(restic_config)
    assert cfg["version"] == version, f"restic sees version {cfg['version']}, wanted {version}"
    assert cfg["id"].startswith(short_id), f"init printed id {short_id}, config id is {cfg['id']}"
    assert re.fullmatch(r"[0-9a-f]{64}", cfg["id"]), cfg
    assert re.fullmatch(r"[0-9a-f]+", cfg["chunker_polynomial"]), cfg
    assert json.loads(restique_config) == cfg, "restique and restic disagree about the config"
    assert restique_config == restic_config, "cat config output is not byte-identical"

    keys_json = key_list_json(run_restic, repo)
    assert len(keys_json) == 1, f"restic key list shows {keys_json}"
    assert keys_json[0]["current"] is True
    assert keys[0].startswith(keys_json[0]["id"]), (keys, keys_json)


# --------------------------------------------------------------------------------------------
# 2. restic init -> restique reads it


def test_restic_init_is_readable_by_restique(fresh_restic_repo, tmp_path):
    repo = repo_copy(fresh_restic_repo, tmp_path / "repo")
    pw2 = write_password_file(tmp_path / "pw2", "second-password")
    run_restic(repo, "key", "add", "--new-password-file", pw2, "--user", "alice",
               "--host", "workstation")
    key_ids = sorted(os.listdir(repo / "keys"))
    assert len(key_ids) == 2

    # restic's view, gathered concurrently
    what = [["cat", "config"], ["cat", "masterkey"]] + [["cat", "key", k] for k in key_ids]
    *oracle, restic_keys = parallel(
        [lambda w=w: run_restic(repo, *w).stdout for w in what]
        + [lambda: key_list_json(run_restic, repo)]
    )
    for args, want in zip(what, oracle):
        got = run_restique(repo, *args).stdout
        assert got == want, f"`{' '.join(args)}` differs:\nrestique: {got!r}\nrestic:   {want!r}"

    def by_id(entries):
        return sorted(entries, key=lambda e: e["id"])

    want = by_id(restic_keys)
    assert [e["userName"] for e in want if not e["current"]] == ["alice"], want
    got = by_id(key_list_json(run_restique, repo))
    assert got == want, f"key list --json differs:\nrestique: {got}\nrestic:   {want}"

    # with alice's password, alice's key is the current one
    for e in want:
        e["current"] = not e["current"]
    got = by_id(key_list_json(run_restique, repo, "second-password"))
    assert got == want, f"key list --json with the second password:\n{got}\nwanted {want}"


# --------------------------------------------------------------------------------------------
# 3. keys


def test_restique_key_add_is_usable_by_restic(fresh_restic_repo, tmp_path):
    repo = repo_copy(fresh_restic_repo, tmp_path / "repo")
    pw = write_password_file(tmp_path / "pw-new", "restique-added")
    proc = run_restique(repo, "key", "add", "--new-password-file", pw, "--user", "alice",
                        "--host", "workstation")
    # restic 0.14: "saved new key as <Key of alice@workstation, created on ...>";
    # current restic: "saved new key with ID <id>" -- either wording is accepted
    assert proc.stdout.startswith(b"saved new key "), proc.stdout
    assert len(os.listdir(repo / "keys")) == 2

    # restic opens the repository with the new password, and the new key carries user/host
    entries = key_list_json(run_restic, repo, "restique-added")
    current = [e for e in entries if e["current"]]
    assert len(current) == 1, entries
    assert (current[0]["userName"], current[0]["hostName"]) == ("alice", "workstation"), entries
    # ... and still with the old one
    assert opens_with(repo, PASSWORD).returncode == 0
    assert os.listdir(repo / "locks") == [], "key add left a lock behind"


def test_restic_key_add_is_usable_by_restique(fresh_restic_repo, tmp_path):
    repo = repo_copy(fresh_restic_repo, tmp_path / "repo")
    pw = write_password_file(tmp_path / "pw-new", "restic-added")
    run_restic(repo, "key", "add", "--new-password-file", pw)

    want = run_restic(repo, "cat", "config").stdout
    proc = opens_with(repo, "restic-added", runner=run_restique)
    assert proc.returncode == 0, f"restique cannot open with restic's new key: {proc.stderr!r}"
    assert proc.stdout == want


def test_restique_key_passwd(fresh_restic_repo, tmp_path):
    repo = repo_copy(fresh_restic_repo, tmp_path / "repo")
    old_keys = set(os.listdir(repo / "keys"))
    pw = write_password_file(tmp_path / "pw-changed", "changed-password")
    proc = run_restique(repo, "key", "passwd", "--new-password-file", pw)
    assert proc.stdout.startswith(b"saved new key "), proc.stdout

    new_keys = set(os.listdir(repo / "keys"))
    assert len(new_keys) == 1 and not new_keys & old_keys, (
        f"key passwd should replace the key: before {old_keys}, after {new_keys}"
    )
    ok = opens_with(repo, "changed-password")
    assert ok.returncode == 0, f"restic cannot open with the new password: {ok.stderr!r}"
    bad = opens_with(repo, PASSWORD)
    assert bad.returncode != 0, "restic still opens the repository with the old password"
    assert b"wrong password or no key found" in bad.stderr, bad.stderr
    assert os.listdir(repo / "locks") == [], "key passwd left a lock behind"


def test_restique_key_remove(fresh_restic_repo, tmp_path):
    repo = repo_copy(fresh_restic_repo, tmp_path / "repo")
    pw = write_password_file(tmp_path / "pw2", "second-password")
    run_restic(repo, "key", "add", "--new-password-file", pw)
    entries = key_list_json(run_restic, repo)
    (other,) = [e for e in entries if not e["current"]]
    (current,) = [e for e in entries if e["current"]]
    full_ids = os.listdir(repo / "keys")
    (other_full,) = [k for k in full_ids if k.startswith(other["id"])]
    (current_full,) = [k for k in full_ids if k.startswith(current["id"])]

    # removing the key restic made (by its 8-hex prefix, as `key list` shows it)
    proc = run_restique(repo, "key", "remove", other["id"])
    assert proc.stdout == f"removed key {other_full}\n".encode(), proc.stdout
    assert lines(run_restic(repo, "list", "keys").stdout) == [current_full]
    assert opens_with(repo, "second-password").returncode != 0

    # removing the key in use is refused and changes nothing
    proc = run_restique(repo, "key", "remove", current["id"], check=False)
    assert proc.returncode == 1, f"exit {proc.returncode}, stderr {proc.stderr!r}"
    assert b"refusing to remove key currently used to access repository" in proc.stderr
    assert b"Traceback" not in proc.stderr
    assert os.listdir(repo / "keys") == [current_full]
    assert opens_with(repo, PASSWORD).returncode == 0
    assert os.listdir(repo / "locks") == [], "key remove left a lock behind"


# --------------------------------------------------------------------------------------------
# 4. a backup made by restic, read by restique


BIG_FILE_SIZE = 30 * 1024 * 1024


def _make_source(root):
    """A small tree: text files, an empty file, a 30 MiB random file, a symlink, subdirs."""
    src = root / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "hello.txt").write_bytes(b"hello, restic\n" * 100)
    (src / "empty").write_bytes(b"")
    (src / "sub" / "notes.md").write_bytes(b"# notes\n\nsome text that compresses well. " * 50)
    (src / "sub" / "deeper" / "tiny").write_bytes(b"x")
    (src / "big.bin").write_bytes(random.Random(20240601).randbytes(BIG_FILE_SIZE))
    os.symlink("hello.txt", src / "link-to-hello")
    return src


def _parse_blob_list(out):
    blobs = {"data": [], "tree": []}
    for line in lines(out):
        kind, blob_id = line.split()
        blobs[kind].append(blob_id)
    return blobs


@pytest.fixture(scope="module")
def backup_repo(tmp_path_factory, private_cache):
    """A format-2 repository holding one restic backup of _make_source(), plus restic's view
    of it (the oracle outputs), gathered once."""
    root = tmp_path_factory.mktemp("backup")
    src = _make_source(root)
    repo = root / "repo"
    run_restic(repo, "init")
    # relative path => the snapshot's root tree contains "src" directly (few tree blobs)
    proc = run_restic(repo, "backup", "--json", "src", cwd=root)
    summaries = [json.loads(l) for l in lines(proc.stdout)]
    summaries = [m for m in summaries if m.get("message_type") == "summary"]
    assert len(summaries) == 1, proc.stdout[-2000:]

    snapshots = lines(run_restic(repo, "list", "snapshots").stdout)
    assert len(snapshots) == 1
    snapshot_id = snapshots[0]
    assert snapshot_id.startswith(summaries[0]["snapshot_id"])

    blob_list, index_list, pack_list, key_list, snapshot_json = parallel([
        lambda: run_restic(repo, "list", "blobs").stdout,
        lambda: run_restic(repo, "list", "index").stdout,
        lambda: run_restic(repo, "list", "packs").stdout,
        lambda: run_restic(repo, "list", "keys").stdout,
        lambda: run_restic(repo, "cat", "snapshot", snapshot_id).stdout,
    ])
    blobs = _parse_blob_list(blob_list)
    index_ids = lines(index_list)
    tree_ids = blobs["tree"]
    outputs = parallel(
        [lambda t=t: run_restic(repo, "cat", "blob", t).stdout for t in tree_ids]
        + [lambda i=i: run_restic(repo, "cat", "index", i).stdout for i in index_ids]
    )
    return SimpleNamespace(
        repo=repo,
        src=src,
        snapshot_id=snapshot_id,
        snapshot_json=snapshot_json,
        blob_list=blob_list,
        blobs=blobs,
        trees=dict(zip(tree_ids, outputs[: len(tree_ids)])),
        index_ids=index_ids,
        indexes=dict(zip(index_ids, outputs[len(tree_ids):])),
        lists={
            "snapshots": snapshots,
            "index": index_ids,
            "packs": lines(pack_list),
            "keys": lines(key_list),
        },
    )


def _tree_node(b, tree_id, name):
    nodes = json.loads(b.trees[tree_id])["nodes"]
    (node,) = [n for n in nodes if n["name"] == name]
    return node


def _sample_data_blobs(b):
    """≤10 data blobs: those of every small file plus some of big.bin (first, last, middle)."""
    root = json.loads(b.snapshot_json)["tree"]
    src = _tree_node(b, root, "src")["subtree"]
    sub = _tree_node(b, src, "sub")["subtree"]
    deeper = _tree_node(b, sub, "deeper")["subtree"]
    small = (
        _tree_node(b, src, "hello.txt")["content"]
        + _tree_node(b, sub, "notes.md")["content"]
        + _tree_node(b, deeper, "tiny")["content"]
    )
    big = _tree_node(b, src, "big.bin")["content"]
    assert len(big) >= 4, f"30 MiB should give several chunks, got {len(big)}"
    picks = small + [big[0], big[len(big) // 3], big[2 * len(big) // 3], big[-1]]
    return list(dict.fromkeys(picks))[:10]


def test_restique_list_blobs_matches_restic(backup_repo):
    b = backup_repo
    got = run_restique(b.repo, "list", "blobs").stdout
    assert sorted_lines(got) == sorted_lines(b.blob_list)
    assert len(b.blobs["tree"]) == 4, f"expected root/src/sub/deeper trees: {b.blobs['tree']}"


def test_restique_cat_tree_blobs_match_restic(backup_repo):
    b = backup_repo
    for tree_id, want in b.trees.items():
        got = run_restique(b.repo, "cat", "blob", tree_id).stdout
        assert got == want, f"tree blob {tree_id} differs:\nrestique: {got[:500]!r}\nrestic: {want[:500]!r}"
        assert hashlib.sha256(got).hexdigest() == tree_id


def test_restique_cat_data_blobs_match_restic(backup_repo):
    b = backup_repo
    sample = _sample_data_blobs(b)
    for i, blob_id in enumerate(sample):
        assert blob_id in b.blobs["data"], f"{blob_id} not listed by restic"
        got = run_restique(b.repo, "cat", "blob", blob_id).stdout
        assert hashlib.sha256(got).hexdigest() == blob_id, (
            f"restique cat blob {blob_id} returned {len(got)} bytes with a different hash"
        )
        if i in (0, len(sample) - 1):  # one small (compressed) and one big blob: against restic
            want = run_restic(b.repo, "cat", "blob", blob_id).stdout
            assert got == want, f"data blob {blob_id} differs from restic's output"


def test_restique_cat_snapshot_matches_restic(backup_repo):
    b = backup_repo
    got = run_restique(b.repo, "cat", "snapshot", b.snapshot_id).stdout
    assert got == b.snapshot_json, f"cat snapshot differs:\n{got!r}\n{b.snapshot_json!r}"
    got = run_restique(b.repo, "cat", "snapshot", b.snapshot_id[:8]).stdout
    assert got == b.snapshot_json, "cat snapshot with an 8-hex prefix differs"


def test_restique_cat_index_matches_restic(backup_repo):
    b = backup_repo
    assert b.index_ids
    for index_id, want in b.indexes.items():
        got = run_restique(b.repo, "cat", "index", index_id).stdout
        assert got == want, f"cat index {index_id} differs:\n{got[:300]!r}\n{want[:300]!r}"


@pytest.mark.parametrize("kind", ["snapshots", "index", "packs", "keys"])
def test_restique_list_matches_restic(backup_repo, kind):
    b = backup_repo
    got = run_restique(b.repo, "list", kind).stdout
    assert sorted_lines(got) == sorted(b.lists[kind])
    assert all(HEX64.match(l.encode()) for l in lines(got))


def test_restique_cat_pack_is_the_file_on_disk(backup_repo):
    b = backup_repo
    assert len(b.lists["packs"]) >= 2, "expected at least a tree pack and a data pack"
    for pack_id in b.lists["packs"]:
        on_disk = (b.repo / "data" / pack_id[:2] / pack_id).read_bytes()
        got = run_restique(b.repo, "cat", "pack", pack_id).stdout
        assert len(got) == len(on_disk) and got == on_disk, f"cat pack {pack_id} differs"


def test_restique_cat_tree(backup_repo):
    b = backup_repo
    root = json.loads(b.snapshot_json)["tree"]
    got = run_restique(b.repo, "cat", "tree", b.snapshot_id).stdout
    assert got == b.trees[root], f"cat tree SNAPSHOT should print the root tree: {got[:300]!r}"

    sub = _tree_node(b, _tree_node(b, root, "src")["subtree"], "sub")["subtree"]
    got = run_restique(b.repo, "cat", "tree", f"{b.snapshot_id[:8]}:/src/sub").stdout
    assert got == b.trees[sub], f"cat tree SNAPSHOT:/src/sub printed {got[:300]!r}"


# --------------------------------------------------------------------------------------------
# 5. restique leaves no locks behind


def test_restique_read_commands_leave_no_locks(backup_repo):
    b = backup_repo
    tree_id = b.blobs["tree"][0]
    for args in (
        ["cat", "config"],
        ["cat", "snapshot", b.snapshot_id],
        ["cat", "blob", tree_id],
        ["list", "blobs"],
        ["key", "list"],
    ):
        run_restique(b.repo, *args)
        assert os.listdir(b.repo / "locks") == [], f"`restique {' '.join(args)}` left a lock"
    # a failing command must clean up too
    proc = run_restique(b.repo, "cat", "blob", "0" * 64, check=False)
    assert proc.returncode != 0
    assert os.listdir(b.repo / "locks") == [], "a failing `restique cat blob` left a lock"

    assert run_restic(b.repo, "list", "locks").stdout == b""
    check = run_restic(b.repo, "check")
    assert b"no errors were found" in check.stdout, check.stdout


def test_format1_backup_is_readable_by_restique(tmp_path):
    """A version-1 (uncompressed) repository with a small restic backup."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"version one\n" * 30)
    (src / "sub" / "b.bin").write_bytes(random.Random(7).randbytes(100_000))
    repo = tmp_path / "repo-v1"
    run_restic(repo, "init", "--repository-version", "1")
    run_restic(repo, "backup", "src", cwd=tmp_path)

    (index_id,) = os.listdir(repo / "index")
    (snapshot_id,) = os.listdir(repo / "snapshots")
    what = [["list", "blobs"], ["cat", "index", index_id], ["cat", "snapshot", snapshot_id]]
    oracle = parallel([lambda w=w: run_restic(repo, *w).stdout for w in what])
    assert b'"uncompressed_length"' not in oracle[1], "the oracle should be format 1"

    got = run_restique(repo, "list", "blobs").stdout
    assert sorted_lines(got) == sorted_lines(oracle[0])
    for args, want in zip(what[1:], oracle[1:]):
        got = run_restique(repo, *args).stdout
        assert got == want, f"`{' '.join(args)}` differs:\nrestique: {got[:300]!r}\nrestic: {want[:300]!r}"
    # restic's `cat blob` prints the blob's plaintext, whose SHA-256 is the blob id
    blob_ids = [l.split()[1] for l in lines(oracle[0])]
    assert len(blob_ids) == 5, f"expected 3 trees (root, src, sub) and 2 data blobs: {oracle[0]!r}"
    for blob_id in blob_ids:
        got = run_restique(repo, "cat", "blob", blob_id).stdout
        assert hashlib.sha256(got).hexdigest() == blob_id, f"cat blob {blob_id}: wrong content"
    assert os.listdir(repo / "locks") == []
