"""What opening a repository no longer loads: socket (the host name comes from os.uname),
calendar (gotime does its own timegm), getpass and termios (the lock's user name is looked up
directly), the durations parser (for the default --retry-lock), the pack module (needed only
once a pack is cached), and no dataclass is made for the global options, the cache setup, the
key file or the snapshot groups."""
import json

from test_startup_imports import probe, repo  # noqa: F401 - repo is a fixture

NOT_FOR_SNAPSHOTS = {"socket", "calendar", "getpass", "termios", "restique.cli.durations",
                     "restique.repository.pack"}

PLAIN_CLASSES = ("restique.operations.cache.CacheSetup", "restique.repository.keys.KeyFile",
                        "restique.model.snapshot_group.SnapshotGroupKey", "restique.cli.context.GlobalOptions")


def test_snapshots_loads_neither_socket_nor_calendar_nor_packs(tmp_path, repo):  # noqa: F811
    proc, seen = probe(tmp_path, repo, "snapshots", "--json")
    assert len(json.loads(proc.stdout)) == 1
    assert NOT_FOR_SNAPSHOTS.isdisjoint(seen["modules"]), NOT_FOR_SNAPSHOTS & set(seen["modules"])


def test_opening_path_classes_are_not_dataclasses():
    import dataclasses
    import importlib

    for path in PLAIN_CLASSES:
        module, _, name = path.rpartition(".")
        assert not dataclasses.is_dataclass(getattr(importlib.import_module(module), name)), path


def test_host_and_user_names_are_the_standard_library_s():
    import getpass
    import os
    import socket

    from restique.repository.keys import default_username

    assert os.uname().nodename == socket.gethostname()
    assert default_username() == getpass.getuser()
