"""The library interface (restique.api, re-exported by restique): each public call once on
small data, its errors and their exit codes, the progress callbacks, the locks it takes, and
the thread-safety rules its docstring states."""
import io
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import restique
from conftest import PASSWORD, clean_env, run_restic, run_restique
from restique.repository.keys import INSECURE_TEST_KEYS_VARIABLE

FILES = {"a.txt": b"alpha\n", "sub/b.txt": b"bravo " * 1000, "sub/deep/c.bin": os.urandom(70_000)}


@pytest.fixture(scope="module", autouse=True)
def cheap_keys():
    mp = pytest.MonkeyPatch()
    mp.setenv(INSECURE_TEST_KEYS_VARIABLE, "1")
    yield
    mp.undo()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("api-source") / "data"
    for name, content in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


@pytest.fixture(scope="module")
def filled(tmp_path_factory, source):
    """A repository made through the API with one backup of source: (location, snapshot)."""
    location = str(tmp_path_factory.mktemp("api-repo") / "repo")
    restique.init(location, password=PASSWORD).close()
    with restique.open(location, password=PASSWORD) as repo:
        result = restique.backup(repo, [str(source)], restique.BackupRequest(tags=["first"]))
    return location, result.snapshot


def snapshot_path(source, name: str) -> str:
    return f"{source}/{name}"


def test_import_is_lazy():
    code = "import sys, restique; print(sorted(m for m in ('boto3', 'click', 'requests', 'paramiko', " \
           "'restique.api') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert restique.open is restique.api.open and restique.WrongPassword is restique.api.WrongPassword
    # the package's static __all__ (for type checkers) names exactly the API's names
    assert set(restique.__all__) - set(restique.api.__all__) == \
        {"__version__", "api", "init_repository", "open_repository"}
    assert set(restique.api.__all__) <= set(restique.__all__)


def test_every_public_name_is_typed_and_documented():
    import inspect

    for name in restique.api.__all__:
        obj = getattr(restique, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):  # documented in the module's table
            assert f"``{name}``" in restique.api.__doc__, name
        elif inspect.isclass(obj) or inspect.isfunction(obj):  # not the type aliases
            assert obj.__doc__, name
        if inspect.isfunction(obj):
            hints = obj.__annotations__
            params = [p for p in inspect.signature(obj).parameters]
            assert "return" in hints and set(params) <= set(hints), name
    assert os.path.exists(os.path.join(os.path.dirname(restique.__file__), "py.typed"))


def test_backup_returns_snapshot_and_summary_and_restic_reads_it(filled, source):
    location, snapshot = filled
    assert len(snapshot.id) == 64 and snapshot.tags == ["first"]
    listed = run_restic(location, "ls", "--json", snapshot.id, env=clean_env()).stdout
    assert snapshot_path(source, "sub/deep/c.bin").encode() in listed
    out = run_restic(location, "dump", snapshot.id, snapshot_path(source, "sub/b.txt"), env=clean_env()).stdout
    assert out == FILES["sub/b.txt"]


def test_backup_progress_callback_and_stream(filled, source, tmp_path):
    location, _ = filled
    seen = []
    with restique.open(location, password=PASSWORD) as repo:
        result = restique.backup(repo, [str(source)], progress=lambda path, kind, item: seen.append((path, kind, item.action)))
        streamed = restique.backup(repo, io.BytesIO(b"from a stream"), restique.BackupRequest(stdin_filename="db.sql"))
        assert restique.read_file(repo, streamed.snapshot, "/db.sql") == b"from a stream"
    assert result.summary["files_unmodified"] == len(FILES) and result.errors == 0
    assert result.snapshot.parent is not None
    assert (snapshot_path(source, "a.txt"), "file", "unchanged") in seen
    assert streamed.summary["files_new"] == 1


def test_snapshots_find_snapshot_and_filter(filled):
    location, first = filled
    with restique.open(location, password=PASSWORD, no_cache=True) as repo:
        tagged = restique.snapshots(repo, restique.SnapshotFilter(tags=[["first"]]))
        assert [sn.id for sn in tagged] == [first.id]
        assert restique.find_snapshot(repo, first.id[:8]).id == first.id
        assert [sn.id for sn in restique.snapshots(repo, ids=[first.id[:10]])] == [first.id]
        with pytest.raises(restique.NotFound):
            restique.find_snapshot(repo, "deadbeef")


def test_reading_calls(filled, source, tmp_path):
    location, first = filled
    with restique.open(location, password=PASSWORD) as repo:
        paths = [path for path, _ in restique.ls(repo, first)]
        assert snapshot_path(source, "sub/deep/c.bin") in paths
        found = list(restique.find(repo, restique.FindOptions(patterns=["*.bin"], snapshots=[first.id])))
        assert [f.path for f in found] == [snapshot_path(source, "sub/deep/c.bin")]
        out = io.BytesIO()
        restique.dump(repo, first, snapshot_path(source, "sub/deep/c.bin"), out)
        assert out.getvalue() == FILES["sub/deep/c.bin"]
        assert restique.stats(repo, restique.StatsOptions(snapshot_ids=[first.id])).total_size == sum(map(len, FILES.values()))
        changes = []
        restique.diff(repo, first, first, on_change=changes.append)
        assert changes == []
        actions = []
        stats = restique.restore(repo, f"{first.id}:{source}/sub", str(tmp_path / "out"),
                                 progress=lambda action, where, size: actions.append(action))
    assert stats.errors == [] and (tmp_path / "out/b.txt").read_bytes() == FILES["sub/b.txt"]
    assert actions.count("file restored") == 2


def test_forget_prune_check_copy(filled, tmp_path):
    location, first = filled
    other = str(tmp_path / "copy")
    with restique.open(location, password=PASSWORD) as repo, \
            restique.init(other, password="other", chunker_polynomial=repo.config.chunker_polynomial) as target:
        events = restique.copy(repo, target, restique.CopyOptions(snapshot_ids=[first.id]))
        assert [type(e).__name__ for e in events] == ["CopyStarted", "SnapshotCopied"]
        assert restique.copy(repo, target, restique.CopyOptions(snapshot_ids=[first.id]))[0].existing
        result = restique.forget(target, restique.ForgetOptions(policy=restique.KeepPolicy(last=1),
                                                                 unsafe_allow_remove_all=True))
        assert result.remove_ids == []
        restique.forget(target, restique.ForgetOptions(snapshot_ids=[events[1].new_id]))
        plan = restique.prune(target)
        assert plan.stats.blobs.remaining == 0
        problems = []
        summary = restique.check(target, restique.CheckOptions(read_data=True), report=problems.append)
        assert not summary.errors_found and problems == []
    run_restic(other, "check", "--read-data", env=clean_env(RESTIC_PASSWORD="other"))


def test_forget_refuses_empty_policy(filled):
    with restique.open(filled[0], password=PASSWORD) as repo:
        with pytest.raises(restique.UsageError):
            restique.forget(repo, restique.ForgetOptions())


@pytest.mark.parametrize("case, error, code", [
    ("missing", restique.RepositoryNotFound, 10),
    ("wrong password", restique.WrongPassword, 12),
    ("password file", restique.PasswordError, 1),
    ("no location", restique.UsageError, 1),
    ("no password", restique.UsageError, 1),
    ("exists", restique.AlreadyExists, 1),
])
def test_errors_and_exit_codes(filled, tmp_path, case, error, code):
    location = filled[0]
    calls = {
        "missing": lambda: restique.open(str(tmp_path / "nothing"), password=PASSWORD),
        "wrong password": lambda: restique.open(location, password="wrong"),
        "password file": lambda: restique.open(location, password_file=str(tmp_path / "none")),
        "no location": lambda: restique.open(None, password=PASSWORD),
        "no password": lambda: restique.open(location),
        "exists": lambda: restique.init(location, password=PASSWORD),
    }
    with pytest.raises(error) as caught:
        calls[case]()
    assert caught.value.exit_code == code and isinstance(caught.value, restique.RestiqueError)


def test_password_sources_and_options(filled, tmp_path):
    location = filled[0]
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    (tmp_path / "where").write_text(location + "\n")
    with restique.open(repository_file=str(tmp_path / "where"), password_file=str(tmp_path / "pw")) as repo:
        assert repo.config.id
    with restique.open(location, password_command=f"cat {tmp_path / 'pw'}", options={"local.connections": "2"}) as repo:
        assert repo.config.id


def test_locks_taken_per_call(filled):
    """A call waits for no one but refuses a conflicting lock, as the CLI does, and leaves
    no lock behind; an exclusive lock of another process blocks even a reading call."""
    location = filled[0]
    with restique.open(location, password=PASSWORD) as repo:
        restique.snapshots(repo)
        assert os.listdir(os.path.join(location, "locks")) == []
        holder = restique.open(location, password=PASSWORD)
        lock = holder.lock(exclusive=True)
        try:
            with pytest.raises(restique.LockFailed) as caught:
                restique.snapshots(repo)
            assert caught.value.exit_code == 11
        finally:
            lock.release()
            holder.close()
        with restique.open(location, password=PASSWORD, no_lock=True) as unlocked:
            assert restique.snapshots(unlocked)
    result = run_restique(location, "snapshots", "--json", env=clean_env())
    assert result.returncode == 0


def test_two_repositories_in_one_process(filled, source, tmp_path):
    second = str(tmp_path / "second")
    with restique.open(filled[0], password=PASSWORD) as one, restique.init(second, password="two") as two:
        restique.backup(two, [str(source / "sub")])
        assert one.config.id != two.config.id
        assert restique.read_file(two, "latest", snapshot_path(source, "sub/b.txt")) == FILES["sub/b.txt"]
        assert restique.read_file(one, filled[1], snapshot_path(source, "a.txt")) == FILES["a.txt"]


def test_one_repository_read_from_eight_threads(filled, source):
    """ls, dump and blob loads of one open repository, 8 threads at once, from a cold start
    (the index is loaded by whichever thread comes first, once)."""
    location, first = filled
    start = threading.Barrier(8)

    def read(n: int):
        start.wait()
        name = list(FILES)[n % len(FILES)]
        listed = sorted(path for path, _ in restique.ls(repo, first))
        assert [sn.id for sn in restique.snapshots(repo, ids=[first.id])] == [first.id]
        data = restique.read_file(repo, first, snapshot_path(source, name))
        node = next(node for path, node in restique.ls(repo, first) if path.endswith("c.bin"))
        blob = repo.load_blob("data", node.content[0])
        return listed, name, data, len(blob)

    with restique.open(location, password=PASSWORD) as repo:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(read, range(8)))
        index_entries = len(repo.index)
    expected_listing = results[0][0]
    for listed, name, data, blob_size in results:
        assert listed == expected_listing and data == FILES[name] and blob_size > 0
    with restique.open(location, password=PASSWORD) as fresh:
        fresh.load_index()
        assert len(fresh.index) == index_entries
