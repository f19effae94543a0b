"""Profiles: the file format (every key of the schema, inheritance, errors with file, line
and key), the password rules, and profiles as defaults that command-line flags override."""
import os
import textwrap

import click
import pytest

from conftest import PASSWORD, clean_env, run_restique
from restique.cli.main import cli
from restique.profiles import ProfileError, load_profile
from restique.profiles.flags import command_defaults, global_settings
from restique.profiles.schema import SCHEMA
from restique.repository.repository import init_repository

EVERY_KEY = """
[profile.base]
repository = "/srv/repo"
password-command = "echo secret"
key-hint = "abcd1234"
cache-dir = "cache"
no-cache = true
compression = "max"
pack-size = 32
retry-lock = "5m"
limit-upload = 100
limit-download = 200
options = { "s3.region" = "eu-west-1", "rest.connections" = 4 }

[profile.full]
inherit = "base"
repository-file = "~/repo.txt"
password-file = "pw"
password = "literal"
allow-password-in-file = true

[profile.full.backup]
sources = ["~/docs", "/etc"]
files-from = ["list.txt"]
exclude = ["*.tmp"]
iexclude = ["*.ISO"]
exclude-file = ["ex.txt"]
iexclude-file = ["iex.txt"]
exclude-caches = true
exclude-if-present = [".nobackup"]
exclude-larger-than = "1G"
one-file-system = true
tags = ["daily", "home"]
host = "laptop"
read-concurrency = 4
skip-if-unchanged = true
group-by = "host,paths,tags"
with-atime = true
ignore-ctime = true
ignore-inode = true

[profile.full.forget]
keep-last = 1
keep-hourly = 2
keep-daily = 7
keep-weekly = "unlimited"
keep-monthly = 12
keep-yearly = -1
keep-within = "1y"
keep-within-hourly = "2d"
keep-within-daily = "7d"
keep-within-weekly = "1m"
keep-within-monthly = "1y"
keep-within-yearly = "9y"
keep-tag = ["keep"]
group-by = "host"
prune = true
max-unused = "10%"
max-repack-size = "1G"
repack-cacheable-only = true
repack-small = true
repack-uncompressed = true

[profile.full.check]
enabled = true
read-data = false
read-data-subset = "5%"
with-cache = true

[profile.full.hooks]
before = "echo before"
after = ["echo one", "echo two"]
on-error = "echo failed"
"""


def write(folder, text, name="profiles.toml", mode=0o600):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    path.chmod(mode)
    return path


def test_every_key_of_the_schema_is_read_and_inherited(tmp_path):
    path = write(tmp_path, EVERY_KEY)
    profile = load_profile("full", str(path))
    used = {(section, key) for section, values in profile.values.items() for key in values}
    schema = {(section, key) for section, keys in SCHEMA.items() for key in keys} - {("", "inherit")}
    assert used == schema, "the example above names every key once"
    assert profile.get("", "repository") == "/srv/repo"  # inherited
    assert profile.get("", "password-file") == str(tmp_path / "pw")  # relative to the file
    assert profile.get("backup", "sources") == [os.path.expanduser("~/docs"), "/etc"]
    assert profile.get("hooks", "before") == ["echo before"]
    flags = global_settings(profile)
    assert flags["repo"] == "/srv/repo" and flags["pack_size"] == 32 and flags["no_cache"] is True
    assert flags["options"] == ("s3.region=eu-west-1", "rest.connections=4")
    defaults = command_defaults(profile)
    assert defaults["backup"]["tag"] == ("daily", "home")
    assert defaults["backup"]["exclude_patterns"] == ("*.tmp",)
    assert defaults["forget"]["keep_weekly"] == "unlimited" and defaults["forget"]["keep_daily"] == "7"
    assert defaults["prune"]["max_unused"] == "10%" and defaults["forget"]["max_unused"] == "10%"
    assert defaults["check"]["read_data_subset"] == "5%"


def test_every_flag_the_schema_names_exists():
    """A typo in the table would silently set nothing: each parameter is a real one."""
    ctx = click.Context(cli)
    for section, keys in SCHEMA.items():
        for key, spec in keys.items():
            if spec.command is None:
                continue
            command = cli if spec.command == "" else cli.get_command(ctx, spec.command)
            assert spec.param in {p.name for p in command.params}, (section, key, spec.param)


def test_inheritance_chain_nearer_values_win(tmp_path):
    path = write(tmp_path, """
        [profile.a]
        repository = "/a"
        options = { "x" = "1", "y" = "1" }
        [profile.a.backup]
        tags = ["a"]
        host = "a-host"
        [profile.b]
        inherit = "a"
        options = { "y" = "2" }
        [profile.b.backup]
        tags = ["b"]
        [profile.c]
        inherit = "b"
        repository = "/c"
        """)
    profile = load_profile("c", str(path))
    assert profile.get("", "repository") == "/c"
    assert profile.get("backup", "tags") == ["b"] and profile.get("backup", "host") == "a-host"
    assert profile.get("", "options") == {"x": "1", "y": "2"}


@pytest.mark.parametrize("text, line, message", [
    ('[profile.a]\nrepository = "/x"\ninherit = "b"\n\n[profile.b]\ninherit = "a"\n', 6,
     "b.inherit: inheritance loop: a -> b -> a"),
    ('[profile.a]\nrepository = "/x"\ninherit = "nobody"\n', 3, 'a.inherit: unknown profile "nobody"'),
    ('[profile.a]\nrepository = "/x"\n\n[profile.a.backup]\nsources = "/home"\n', 5,
     "a.backup.sources: must be a list of strings, not a string"),
    ('[profile.a]\nrepositry = "/x"\n', 2, "a.repositry: unknown key"),
    ('[profile.a.forget]\n\nkeep-daily = "7"\n', 3, 'a.forget.keep-daily: must be a number of snapshots'),
    ('[profile.a.backup]\none-file-system = "yes"\n', 2, "a.backup.one-file-system: must be true or false"),
    ('[profile.a.forget]\nkeep-within = "7x"\n', 2, "a.forget.keep-within: "),
    ('[profile.a.restore]\ntarget = "/x"\n', 1, "a.restore: unknown key"),
    ('[profile.a]\nrepository = \n', 2, "not valid TOML"),
    ('[profile.a]\nbackup = { sources = ["/x"], excludes = ["y"] }\n', 2, "a.backup.excludes: unknown key in [backup]"),
])
def test_errors_name_file_line_and_key(tmp_path, text, line, message):
    path = write(tmp_path, text)
    proc = run_restique(None, "--config", path, "--profile", "a", "snapshots", check=False)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert err.startswith(f"Fatal: {path}:{line}: ") and message in err, err
    assert err.count("\n") == 1


def test_an_unknown_profile_names_the_file_and_the_profiles(tmp_path):
    path = write(tmp_path, '[profile.home]\nrepository = "/x"\n[profile.work]\nrepository = "/y"\n')
    proc = run_restique(None, "--config", path, "--profile", "office", "snapshots", check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode() == f'Fatal: {path}: unknown profile "office" (profiles in the file: home, work)\n'
    missing = run_restique(None, "--config", tmp_path / "none.toml", "--profile", "x", "snapshots", check=False)
    assert missing.returncode == 1 and b"does not exist" in missing.stderr


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """Two repositories with one snapshot each (tagged by where it is), and a password file."""
    root = tmp_path_factory.mktemp("profiles")
    (root / "pw").write_text(PASSWORD + "\n")
    (root / "pw").chmod(0o600)
    (root / "src").mkdir()
    (root / "src" / "file.txt").write_text("hello")
    for name in ("one", "two"):
        init_repository(str(root / name), PASSWORD, kdf_params=(1 << 10, 8, 1)).close()
        run_restique(root / name, "backup", "--tag", name, root / "src")
    return root


def _snapshot_tags(proc):
    import json

    return sorted(tag for sn in json.loads(proc.stdout) for tag in sn.get("tags") or [])


def test_the_command_line_beats_the_profile_and_the_profile_beats_the_environment(repos, tmp_path):
    path = write(tmp_path, f"""
        [profile.p]
        repository = "{repos / 'one'}"
        password-file = "{repos / 'pw'}"
        [profile.p.backup]
        tags = ["from-profile"]
        sources = ["{repos / 'src'}"]
        """)
    env = clean_env(RESTIC_REPOSITORY=str(repos / "two"), RESTIC_PASSWORD="wrong")
    profile_only = run_restique(None, "--config", path, "--profile", "p", "snapshots", "--json", env=env)
    assert _snapshot_tags(profile_only) == ["one"]
    flag = run_restique(None, "--profile", "p", "--config", path, "-r", repos / "two", "snapshots", "--json", env=env)
    assert _snapshot_tags(flag) == ["two"]
    # a command's own flags: the profile's as defaults, the command line's instead
    run_restique(None, "--config", path, "--profile", "p", "backup", "--tag", "from-flag", env=env)
    run_restique(None, "backup", "--profile", "p", "--config", path, env=env)  # global flags anywhere
    tags = _snapshot_tags(run_restique(None, "--config", path, "--profile", "p", "snapshots", "--json", env=env))
    assert tags == ["from-flag", "from-profile", "one"]


@pytest.mark.parametrize("profile_key, flag, read", [
    ('read-data-subset = "1/1000"', "--read-data", "read all data"),
    ("read-data = true", "--read-data-subset=1/100", "packs in 100 groups"),
])
def test_a_check_flag_replaces_the_profiles_other_read_data_choice(repos, tmp_path, profile_key, flag, read):
    path = write(tmp_path, f"""
        [profile.p]
        repository = "{repos / 'one'}"
        password-file = "{repos / 'pw'}"
        [profile.p.check]
        {profile_key}
        """)
    proc = run_restique(None, "--config", path, "--profile", "p", "check", flag)
    assert read in proc.stdout.decode()


def test_a_password_in_the_file_needs_the_insist_key_and_a_private_file(repos, tmp_path):
    body = f'[profile.p]\nrepository = "{repos / "two"}"\npassword = "{PASSWORD}"\n'
    env = clean_env()
    del env["RESTIC_PASSWORD"]
    refused = run_restique(None, "--config", write(tmp_path, body), "--profile", "p", "snapshots", env=env, check=False)
    assert refused.returncode == 1
    assert b":3: p.password: a password in the profile file needs allow-password-in-file = true" in refused.stderr
    insisted = body + "allow-password-in-file = true\n"
    shared = write(tmp_path, insisted, mode=0o640)
    proc = run_restique(None, "--config", shared, "--profile", "p", "snapshots", env=env, check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode() == (f"Fatal: {shared}: holds a password but is readable by others (mode 0640); "
                                    f"make it private with: chmod 600 {shared}\n")
    shared.chmod(0o600)
    assert _snapshot_tags(run_restique(None, "--config", shared, "--profile", "p", "snapshots", "--json",
                                       env=env)) == ["two"]
    # a password file or command may live in a file anyone can read
    public = write(tmp_path, f'[profile.p]\nrepository = "{repos / "two"}"\npassword-command = "cat {repos / "pw"}"\n',
                   name="public.toml", mode=0o644)
    assert _snapshot_tags(run_restique(None, "--config", public, "--profile", "p", "snapshots", "--json",
                                       env=env)) == ["two"]


def test_the_config_file_is_found_by_variable_and_by_xdg_folder(repos, tmp_path):
    body = f'[profile.p]\nrepository = "{repos / "two"}"\npassword-file = "{repos / "pw"}"\n'
    by_variable = write(tmp_path, body, name="elsewhere.toml")
    env = clean_env(RESTIQUE_CONFIG=str(by_variable))
    assert _snapshot_tags(run_restique(None, "--profile", "p", "snapshots", "--json", env=env)) == ["two"]
    (tmp_path / "xdg" / "restique").mkdir(parents=True)
    write(tmp_path / "xdg" / "restique", body)
    env = clean_env(XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    assert _snapshot_tags(run_restique(None, "--profile", "p", "snapshots", "--json", env=env)) == ["two"]


def test_library_errors_are_profile_errors(tmp_path):
    path = write(tmp_path, '[profile.a]\ninherit = "a"\n')
    with pytest.raises(ProfileError, match=r":2: a.inherit: inheritance loop: a -> a"):
        load_profile("a", str(path))


def test_lines_are_found_past_multi_line_arrays_and_inline_tables(tmp_path):
    path = write(tmp_path, """\
        [profile.a.backup]
        sources = [
            "/one",   # a comment with = in it
            "/two",
        ]
        exclude = ["x"]
        [profile.b]
        backup = { tags = ["t"] }
        profile-typo = 1
        """)
    with pytest.raises(ProfileError, match=r"profiles.toml:9: b.profile-typo: unknown key"):
        load_profile("a", str(path))
    path.write_text(path.read_text().replace('backup = { tags = ["t"] }\nprofile-typo = 1\n', "backup = { host = 5 }\n"))
    with pytest.raises(ProfileError, match=r"profiles.toml:8: b.backup.host: must be a string"):
        load_profile("a", str(path))
