"""The backend contract (restique.backend.base), checked the same way for every backend.

Each test runs once per backend in BACKENDS; a new backend joins by adding a factory there.
The contract follows restic's backend test suite: whole and ranged loads, atomic saves, stat,
list per file type, remove, the not-found and permanent-error classification, create on an
existing repository, the config file, and concurrent use from several threads.
"""
import hashlib
import os
import random
import threading

import pytest

from restique.backend import (
    Backend,
    BackendError,
    BackendFileExists,
    BackendNotFound,
    BackendShortRead,
    FileType,
    PermanentBackendError,
    is_not_found,
    is_permanent,
    open_backend,
    register_scheme,
)
from restique.backend import location as locations
from restique.backend import parts
from restique.backend.local import LocalBackend
from restique.backend.memory import MemoryBackend
from restique.errors import AlreadyExists, IntegrityError, RepositoryNotFound, RestiqueError, UsageError

PASSWORD = "conformance"
FAST_KDF = (1 << 10, 8, 1)  # scrypt parameters that keep key files quick to make
DATA_TYPES = [FileType.KEY, FileType.LOCK, FileType.SNAPSHOT, FileType.INDEX, FileType.PACK]

BACKENDS = {
    "local": lambda tmp_path: LocalBackend(str(tmp_path / "repo")),
    "memory": lambda tmp_path: MemoryBackend(),
}


@pytest.fixture(params=sorted(BACKENDS))
def fresh(request, tmp_path):
    """A backend where no repository has been created yet."""
    be = BACKENDS[request.param](tmp_path)
    yield be
    be.close()


@pytest.fixture
def be(fresh):
    """A backend with an empty repository laid out."""
    fresh.create()
    return fresh


def hex_name(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store(be, ftype, data: bytes) -> str:
    name = hex_name(data)
    be.save(ftype, name, data)
    return name


def listed(be, ftype):
    return sorted(be.list(ftype))


# --------------------------------------------------------------------------------------------
# shape of the contract


def test_meets_the_protocol(be):
    assert isinstance(be, Backend)
    assert isinstance(be.location, str) and be.location
    assert isinstance(be.atomic_replace, bool)


def test_file_type_naming():
    table = {ft: (ft.folder, ft.label) for ft in FileType}
    assert table == {
        FileType.CONFIG: ("config", "config"),
        FileType.KEY: ("keys", "key"),
        FileType.LOCK: ("locks", "lock"),
        FileType.SNAPSHOT: ("snapshots", "snapshot"),
        FileType.INDEX: ("index", "index"),
        FileType.PACK: ("data", "data"),
    }
    aliases = {
        "config": FileType.CONFIG, "key": FileType.KEY, "keys": FileType.KEY,
        "lock": FileType.LOCK, "locks": FileType.LOCK, "snapshot": FileType.SNAPSHOT,
        "snapshots": FileType.SNAPSHOT, "index": FileType.INDEX, "pack": FileType.PACK,
        "packs": FileType.PACK, "data": FileType.PACK,
    }
    assert {name: FileType.parse(name) for name in aliases} == aliases
    assert FileType.parse(FileType.LOCK) is FileType.LOCK
    for bad in ("blobs", "Keys", "", None):
        with pytest.raises(UsageError, match="invalid file type"):
            FileType.parse(bad)


# --------------------------------------------------------------------------------------------
# save and load


@pytest.mark.parametrize("ftype", DATA_TYPES, ids=lambda ft: ft.label)
def test_save_and_load_whole(be, ftype):
    data = random.Random(1).randbytes(5000)
    name = store(be, ftype, data)
    assert be.load(ftype, name) == data
    parts = [b"first part ", memoryview(b"second part "), bytearray(b"third")]
    name2 = hex_name(b"".join(parts))
    be.save(ftype, name2, parts)
    assert be.load(ftype, name2) == b"first part second part third"
    empty = store(be, ftype, b"")
    assert be.load(ftype, empty) == b""


def test_save_from_a_file(be, tmp_path, monkeypatch):
    """A pack sent from its temporary file (parts.FileBody), read piece by piece as it goes."""
    monkeypatch.setattr(parts, "FILE_PIECE", 1000)
    data = random.Random(4).randbytes(5500)
    with open(tmp_path / "pack-file", "w+b") as f:
        f.write(b"before" + data + b"after")
        f.flush()
        be.save(FileType.PACK, hex_name(data), parts.FileBody(f.fileno(), len(data), offset=6))
    assert be.load(FileType.PACK, hex_name(data)) == data


def test_load_ranges(be):
    data = random.Random(2).randbytes(10_000)
    name = store(be, FileType.PACK, data)
    fixed = [(0, None), (1, None), (5, 100), (9_999, 1), (9_990, 10), (0, 10_000), (10_000, None)]
    rnd = random.Random(3)
    for offset, length in fixed + [(rnd.randrange(10_000), None) for _ in range(20)]:
        end = len(data) if length is None else offset + length
        assert be.load(FileType.PACK, name, offset, length) == data[offset:end], (offset, length)
    for _ in range(50):
        offset = rnd.randrange(10_000)
        length = rnd.randrange(10_000 - offset + 1)
        assert be.load(FileType.PACK, name, offset, length) == data[offset:offset + length]


def test_length_zero_is_an_empty_range(be):
    name = store(be, FileType.PACK, b"0123456789")
    assert be.load(FileType.PACK, name, 0, 0) == b""
    assert be.load(FileType.PACK, name, 10, 0) == b""
    with pytest.raises(BackendNotFound):
        be.load(FileType.PACK, "00" * 32, 0, 0)  # still checks that the file exists


@pytest.mark.parametrize("offset, length", [(11, None), (11, 0), (5, 6), (10, 1), (0, 11), (100, 5)])
def test_reading_past_the_end_is_a_short_read(be, offset, length):
    name = store(be, FileType.PACK, b"0123456789")
    with pytest.raises(BackendShortRead) as err:
        be.load(FileType.PACK, name, offset, length)
    exc = err.value
    assert isinstance(exc, EOFError) and is_permanent(exc) and not is_not_found(exc)
    assert name in str(exc)


@pytest.mark.parametrize("offset, length", [(-1, None), (0, -1)])
def test_negative_ranges_are_refused(be, offset, length):
    name = store(be, FileType.PACK, b"0123456789")
    with pytest.raises(ValueError):
        be.load(FileType.PACK, name, offset, length)


def test_save_onto_an_existing_name(be):
    """restic: a backend that renames atomically replaces the file, any other refuses."""
    be.save(FileType.SNAPSHOT, "ab" * 32, b"old content")
    if be.atomic_replace:
        be.save(FileType.SNAPSHOT, "ab" * 32, b"new")
        assert be.load(FileType.SNAPSHOT, "ab" * 32) == b"new"
    else:
        with pytest.raises(BackendFileExists) as err:
            be.save(FileType.SNAPSHOT, "ab" * 32, b"new")
        assert is_permanent(err.value)
        assert be.load(FileType.SNAPSHOT, "ab" * 32) == b"old content"
    assert listed(be, FileType.SNAPSHOT) == [("ab" * 32, be.stat(FileType.SNAPSHOT, "ab" * 32))]


def test_failed_save_leaves_nothing(be):
    with pytest.raises(TypeError):
        be.save(FileType.PACK, "cd" * 32, [b"a" * 100_000, 42])  # the second part is no bytes
    assert listed(be, FileType.PACK) == []
    with pytest.raises(BackendNotFound):
        be.stat(FileType.PACK, "cd" * 32)
    if isinstance(be, LocalBackend):  # no temporary file left behind either
        assert os.listdir(os.path.join(be.path, "data", "cd")) == []


def test_readers_see_a_whole_file_or_none(be):
    data = random.Random(4).randbytes(4 << 20)
    name = hex_name(data)
    seen = set()
    done = threading.Event()

    def reader():
        while not done.is_set():
            try:
                got = be.load(FileType.PACK, name)
            except BackendNotFound:
                seen.add("missing")
                continue
            seen.add("whole" if got == data else f"partial {len(got)}")
            size = dict(be.list(FileType.PACK)).get(name, len(data))
            if size != len(data):
                seen.add(f"listed with {size} bytes")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        be.save(FileType.PACK, name, data)
        while "whole" not in seen and thread.is_alive():
            threading.Event().wait(0.001)
    finally:
        done.set()
        thread.join()
    assert seen <= {"missing", "whole"} and "whole" in seen, seen


# --------------------------------------------------------------------------------------------
# stat, list, remove


def test_stat(be):
    name = store(be, FileType.INDEX, b"x" * 1234)
    assert be.stat(FileType.INDEX, name) == 1234
    with pytest.raises(BackendNotFound):
        be.stat(FileType.SNAPSHOT, name)  # same name, other type


def test_list_per_type(be):
    rnd = random.Random(5)
    expected = {}
    for ftype in DATA_TYPES:
        assert listed(be, ftype) == [], "a new repository is empty"
        contents = [rnd.randbytes(rnd.randrange(55, 155)) for _ in range(rnd.randrange(20, 40))]
        expected[ftype] = sorted((store(be, ftype, data), len(data)) for data in contents)
    assert listed(be, FileType.CONFIG) == []
    for ftype in DATA_TYPES:
        assert listed(be, ftype) == expected[ftype]
    # packs spread over the 256 folders under data/ are all listed
    assert len({name[:2] for name, _ in expected[FileType.PACK]}) > 1


def test_remove(be):
    keep = store(be, FileType.LOCK, b"keep")
    gone = store(be, FileType.LOCK, b"gone")
    be.remove(FileType.LOCK, gone)
    assert listed(be, FileType.LOCK) == [(keep, 4)]
    with pytest.raises(BackendNotFound):
        be.load(FileType.LOCK, gone)
    with pytest.raises(BackendNotFound):
        be.remove(FileType.LOCK, gone)
    with pytest.raises(BackendNotFound):
        be.remove(FileType.KEY, keep)  # the name exists, but as another type


# --------------------------------------------------------------------------------------------
# error classification


def test_missing_files_are_not_found_errors(be):
    name = "ef" * 32
    for call in (lambda: be.load(FileType.PACK, name), lambda: be.load(FileType.PACK, name, 5, 10),
                 lambda: be.stat(FileType.KEY, name), lambda: be.remove(FileType.INDEX, name)):
        with pytest.raises(BackendNotFound) as err:
            call()
        exc = err.value
        assert is_not_found(exc) and is_permanent(exc)
        assert isinstance(exc, FileNotFoundError) and isinstance(exc, BackendError)
        assert exc.filename and not isinstance(exc, RestiqueError)


def test_error_classification():
    missing = BackendNotFound(2, "No such file or directory", "keys/ab")
    try:
        try:
            raise missing
        except BackendNotFound as exc:
            raise IntegrityError("key vanished") from exc
    except IntegrityError as wrapped:
        assert is_not_found(wrapped), "a wrapped not-found error is still one"
    assert not is_not_found(FileNotFoundError(2, "plain OS error"))
    assert not is_not_found(BackendShortRead("short"))
    assert is_permanent(PermanentBackendError("bad request"))
    assert not is_permanent(BackendError("server busy"))
    for transient in (ConnectionResetError(), TimeoutError(), OSError(5, "Input/output error")):
        assert not is_permanent(transient), transient
    for permanent in (PermissionError(13, "Permission denied"), ValueError("bug"), IntegrityError("bad")):
        assert is_permanent(permanent), permanent


# --------------------------------------------------------------------------------------------
# repository layout: create, config


def test_create_lays_out_an_empty_repository(fresh):
    fresh.create()
    for ftype in DATA_TYPES:
        assert listed(fresh, ftype) == []
    with pytest.raises(BackendNotFound):
        fresh.stat(FileType.CONFIG, "")


def test_create_on_an_existing_repository_fails(be):
    be.save(FileType.CONFIG, "", b"test config")
    with pytest.raises(AlreadyExists, match="config file already exists"):
        be.create()
    assert be.load(FileType.CONFIG, "") == b"test config"


def test_config_file(be):
    with pytest.raises(BackendNotFound):
        be.load(FileType.CONFIG, "")
    be.save(FileType.CONFIG, "", b"Config")
    for name in ("", "foo", "0" * 64):  # the config has no name: any is the same file
        assert be.load(FileType.CONFIG, name) == b"Config"
        assert be.stat(FileType.CONFIG, name) == 6
    assert listed(be, FileType.CONFIG) == []
    be.remove(FileType.CONFIG, "")
    with pytest.raises(BackendNotFound):
        be.stat(FileType.CONFIG, "")


# --------------------------------------------------------------------------------------------
# concurrency


def test_concurrent_saves_from_threads(be):
    def work(worker):
        rnd = random.Random(worker)
        for i in range(25):
            data = rnd.randbytes(rnd.randrange(1, 3000))
            store(be, DATA_TYPES[i % len(DATA_TYPES)], data)
            written.append((DATA_TYPES[i % len(DATA_TYPES)], hex_name(data), len(data)))

    written = []
    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(written) == 8 * 25
    for ftype in DATA_TYPES:
        assert listed(be, ftype) == sorted((name, size) for kind, name, size in written if kind is ftype)


def test_concurrent_saves_of_one_name(be):
    data = b"same content from every thread" * 1000
    errors = []

    def work():
        for attempt in range(3):  # as the retry wrapper would: a test server (moto) can answer
            try:                  # one of several PUTs of one key at once with a 500
                be.save(FileType.INDEX, hex_name(data), data)
                return
            except BackendFileExists as exc:
                errors.append(exc)
                return
            except BackendError:
                if attempt == 2:
                    raise

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # a backend that cannot replace atomically refuses a save it sees coming second; over a
    # network two saves may both pass that check (names are content hashes: same bytes)
    assert len(errors) == 0 if be.atomic_replace else len(errors) <= 7
    assert be.load(FileType.INDEX, hex_name(data)) == data
    assert listed(be, FileType.INDEX) == [(hex_name(data), len(data))]


# --------------------------------------------------------------------------------------------
# a whole repository over the in-memory backend


def test_repository_over_the_memory_backend():
    from restique.repository.repository import init_repository, open_repository

    be = MemoryBackend()
    with pytest.raises(RepositoryNotFound, match="repository does not exist"):
        open_repository(be, PASSWORD)
    repo = init_repository(be, PASSWORD, kdf_params=FAST_KDF)
    blob_id, new = repo.save_blob("data", b"hello, memory")
    assert new
    repo.flush()
    repo.close()
    assert len(listed(be, FileType.PACK)) == 1 and len(listed(be, FileType.INDEX)) == 1
    with pytest.raises(AlreadyExists):
        init_repository(be, PASSWORD, kdf_params=FAST_KDF)

    with open_repository(be, PASSWORD) as again:
        assert again.config.id == repo.config.id
        assert again.load_blob("data", blob_id) == b"hello, memory"
        with again.lock(exclusive=True):
            assert len(listed(be, FileType.LOCK)) == 1
    assert listed(be, FileType.LOCK) == []


# --------------------------------------------------------------------------------------------
# locations: the scheme registry


def test_locations_open_the_registered_backend(tmp_path, monkeypatch):
    plain = open_backend(str(tmp_path))
    prefixed = open_backend(f"local:{tmp_path}")
    assert isinstance(plain, LocalBackend) and isinstance(prefixed, LocalBackend)
    assert plain.path == prefixed.path == str(tmp_path)
    assert prefixed.location == f"local:{tmp_path}"

    monkeypatch.setattr(locations, "SCHEMES", dict(locations.SCHEMES))
    opened = []
    register_scheme("mem", lambda rest, location: opened.append((rest, location)) or MemoryBackend(location))
    assert open_backend("mem:name").location == "mem:name"
    assert opened == [("name", "mem:name")]


def test_unknown_and_planned_schemes_keep_their_messages():
    with pytest.raises(UsageError, match=r"^Please specify repository location \(-r or --repository-file\)$"):
        open_backend("")
    with pytest.raises(RestiqueError) as err:
        open_backend("b2:bucket:/srv/repo")
    assert str(err.value) == "the b2 backend is not implemented yet (repository b2:bucket:/srv/repo)"
    with pytest.raises(UsageError) as err:
        open_backend("bogus:/x")
    assert str(err.value) == (
        "parsing repository location failed: invalid backend; "
        "if the repository is in a local directory, add a `local:` prefix"
    )
    assert isinstance(open_backend("c:/x"), LocalBackend)  # a drive letter, not a scheme
    assert isinstance(open_backend("./dir:with:colons"), LocalBackend)
