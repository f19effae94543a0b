"""restore --include-xattr / --exclude-xattr (current restic's flags, not in 0.14): which
extended attributes are restored. An attribute left out is neither set nor, on a file that
already exists, removed; by default all are restored and stale user.* ones removed."""
import os

import pytest

from conftest import run_restique as restique

XATTRS = {"user.keep": b"k", "user.skip": b"s", "user.other.deep": b"d"}


def xattrs(path) -> dict:
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in os.listxattr(path, follow_symlinks=False)
            if n.startswith("user.")}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    base = tmp_path_factory.mktemp("xattr_filter")
    src = base / "src"
    (src / "dir").mkdir(parents=True)
    for path in (src / "file", src / "dir"):
        if path.name == "file":
            path.write_bytes(b"content")
        for name, value in XATTRS.items():
            os.setxattr(path, name, value)
    repo = base / "repo"
    restique(repo, "init")
    restique(repo, "backup", src)
    return repo, src


def restored(repo, src, target, *flags):
    restique(repo, "restore", "latest", "--target", target, *flags)
    inside = target / str(src).lstrip("/")
    return xattrs(inside / "file"), xattrs(inside / "dir")


@pytest.mark.parametrize("flags, expected", [
    ((), set(XATTRS)),
    (("--include-xattr", "user.keep"), {"user.keep"}),
    (("--include-xattr", "user.keep", "--include-xattr", "user.other.*"), {"user.keep", "user.other.deep"}),
    (("--exclude-xattr", "user.skip"), {"user.keep", "user.other.deep"}),
    (("--exclude-xattr", "*"), set()),
    (("--include-xattr", "user.nothing"), set()),
])
def test_only_selected_attributes_are_restored(repo, tmp_path, flags, expected):
    file_attrs, dir_attrs = restored(*repo, tmp_path / "t", *flags)
    assert set(file_attrs) == expected and set(dir_attrs) == expected
    assert all(file_attrs[n] == XATTRS[n] for n in expected)


def test_an_attribute_left_out_is_not_removed_from_an_existing_file(repo, tmp_path):
    repo_path, src = repo
    target = tmp_path / "t"
    restored(repo_path, src, target)
    existing = target / str(src).lstrip("/") / "file"
    os.setxattr(existing, "user.stale", b"x")
    os.setxattr(existing, "user.skip", b"changed")
    file_attrs, _ = restored(repo_path, src, target, "--exclude-xattr", "user.s*")
    assert file_attrs == {"user.keep": b"k", "user.other.deep": b"d", "user.stale": b"x", "user.skip": b"changed"}
    file_attrs, _ = restored(repo_path, src, target)  # no filter: the snapshot's set exactly
    assert file_attrs == XATTRS


@pytest.mark.parametrize("flags, message", [
    (("--include-xattr", "user.a", "--exclude-xattr", "user.b"),
     "Fatal: exclude and include xattr patterns are mutually exclusive"),
    (("--exclude-xattr", "user.["), "Fatal: --exclude-xattr: invalid pattern(s) provided: user.["),
    (("--include-xattr", "[x"), "Fatal: --include-xattr: invalid pattern(s) provided: [x"),
])
def test_bad_patterns_are_refused_before_anything_is_written(repo, tmp_path, flags, message):
    repo_path, _ = repo
    proc = restique(repo_path, "restore", "latest", "--target", tmp_path / "t", *flags, check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == message
    assert not (tmp_path / "t").exists()
