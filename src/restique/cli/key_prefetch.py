"""Starting the key derivation before the command line is even parsed.

Deriving the key takes most of a short command's time (0.43 s of `snapshots`' 0.54 s), on one
core, and loading click and the command's modules comes before it. In the common scripted
case (a local repository with a single key file, the password in RESTIC_PASSWORD, a command
that opens the repository) the derivation the opening will ask for is started here, in a
background thread, and both run at once. Anything unusual (another backend, a password file or
command, a profile, several keys) is left to the ordinary path. A wrong guess costs CPU time on
the other core, never a wrong key: the opening only takes a result derived from exactly its
own inputs (repository.derivations).
"""
import os

# no typing here: this loads before the derivation starts, typing and what it imports after

# the commands whose first step is opening the repository with a password
OPENING_COMMANDS = frozenset({
    "backup", "snapshots", "restore", "diff", "ls", "stats", "find", "dump", "forget", "check",
    "copy", "tag", "rewrite", "repair", "rebuild-index", "prune", "recover", "mount", "cat",
    "list", "key", "unlock", "migrate",
})
# the commands that wait idle for the key and then read trees or data: their peak memory is
# past the derivation's own, and the other core has nothing to do meanwhile, so the derivation
# may take a helper lane (repository.derivations). Not the light ones (snapshots, key, tag,
# forget alone: their peak is the derivation's work area).
HELPER_LANE_COMMANDS = frozenset({
    "restore", "diff", "ls", "stats", "find", "dump", "check", "copy", "rewrite", "repair",
    "rebuild-index", "prune", "recover", "mount", "migrate",
})
# the commands whose own work uses the other core while the key is derived (backup's prescan
# walks the tree): their helper lane waits until that work lends the core
# (derivations.lend_core). A tree's prescan ends near the derivation's end, when no two lanes
# are left for the helper, which then takes neither time nor memory; a single file's or
# stdin's ends at once.
HELPER_LANE_WHEN_LENT = frozenset({"backup"})
# any of these makes the location or the password come from somewhere else
_OTHER_SOURCES = ("--repository-file", "-p", "--password-file", "--password-command", "--profile",
                  "--config", "--insecure-no-password")
_OTHER_SOURCE_VARIABLES = ("RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND")
_KEY_FILE_MAX_SIZE = 1 << 16


def start(argv: "list[str]", commands: dict, interrupted=lambda: False) -> None:
    """Start deriving the key of the repository argv names, when it is that common case.
    commands: every command name (the first argument that is one is the command). For the
    light commands (no helper lane) this returns only when the key is derived, or once
    interrupted() is true (a stop signal held back until start-up is over): their peak memory
    is the derivation's work area plus what is loaded meanwhile, and loading the command's
    modules after the work area is freed takes ~10 MiB off it for ~20 ms of wall time."""
    try:
        light = not _allow_helper_lane(argv, commands)
        key_file = _key_file(argv, commands)
        password = os.environ.get("RESTIC_PASSWORD")
        if key_file and password:
            _start_deriving(key_file, password)
    except Exception:  # an unreadable or odd key file: the ordinary path meets and reports it
        return
    if light:
        from ..repository import derivations

        derivations.wait_for_started(interrupted)


def _options(argv: "list[str]") -> "list[str]":
    """The arguments before a `--` (after it, everything is the command's operands)."""
    return argv[:argv.index("--")] if "--" in argv else argv


def _allow_helper_lane(argv: "list[str]", commands: dict) -> bool:
    """A helper lane for the derivation of the commands HELPER_LANE_COMMANDS names (and forget
    --prune: it prunes once the snapshots are forgotten), and one that waits for the core for
    those HELPER_LANE_WHEN_LENT names; whether it was allowed."""
    from ..repository import derivations

    options = _options(argv)
    command = _command(options, commands)
    waits = command in HELPER_LANE_WHEN_LENT
    allowed = command in HELPER_LANE_COMMANDS or waits or (command == "forget" and "--prune" in options)
    derivations.allow_helper_lane(allowed, until_lent=waits)
    return allowed


def _key_file(argv: "list[str]", commands: dict) -> "str | None":
    """The path of the local repository's only key file, when argv is the common case."""
    options = _options(argv)
    command = _command(options, commands)
    if command not in OPENING_COMMANDS or any(os.environ.get(name) for name in _OTHER_SOURCE_VARIABLES):
        return None
    if any(arg.split("=", 1)[0] in _OTHER_SOURCES or _is_short(arg, "-p") for arg in options):
        return None
    path = _local_path(_repository(options) or os.environ.get("RESTIC_REPOSITORY", ""))
    if not path:
        return None
    folder = os.path.join(path, "keys")
    names = [entry.name for entry in os.scandir(folder) if "-tmp-" not in entry.name and entry.is_file()]
    return os.path.join(folder, names[0]) if len(names) == 1 else None


# the global options that take a value as the next argument (`--cache-dir cache` names no command)
_TAKING_A_VALUE = frozenset({
    "-r", "--repo", "--repository-file", "-p", "--password-file", "--password-command", "--key-hint",
    "--cache-dir", "--compression", "--pack-size", "--retry-lock", "-o", "--option", "--limit-upload",
    "--limit-download", "--cacert", "--tls-client-cert", "--profile", "--config", "--http-user-agent",
    "--stuck-request-timeout",
})


def _command(options: "list[str]", commands: dict) -> "str | None":
    """The command argv runs: the first argument that names one and is no global option's value."""
    skip = False
    for arg in options:
        if skip:
            skip = False
        elif arg in _TAKING_A_VALUE:
            skip = True
        elif arg in commands:
            return arg
        elif not arg.startswith("-"):
            return None  # an argument that is neither an option nor a command: click refuses it
    return None


def _repository(options: "list[str]") -> "str | None":
    """The value of the last -r/--repo in options (click's rule: the last one wins)."""
    location = None
    for i, arg in enumerate(options):
        if arg in ("-r", "--repo") and i + 1 < len(options):
            location = options[i + 1]
        elif arg.startswith("--repo="):
            location = arg[len("--repo="):]
        elif _is_short(arg, "-r"):
            location = arg[2:]
    return location


def _is_short(arg: str, flag: str) -> bool:
    """arg is the short option flag with its value attached (-r/srv/repo)."""
    return arg.startswith(flag) and len(arg) > 2


def _local_path(location: str) -> "str | None":
    """The folder of a local location (a path, or local:path), else None."""
    if location.startswith("local:"):
        return location[len("local:"):]
    scheme, colon, _ = location.partition(":")
    if colon and "/" not in scheme and len(scheme) > 1:
        return None  # sftp:, s3:, rest: ... (a drive letter or a colon after a slash is a path)
    return location or None


def _start_deriving(key_file: str, password: str) -> None:
    import binascii
    import json

    from ..repository import derivations

    with open(key_file, "rb") as f:
        key = json.loads(f.read(_KEY_FILE_MAX_SIZE))
    if key.get("kdf") != "scrypt":
        return
    salt = binascii.a2b_base64(key["salt"], strict_mode=True)  # base64.b64decode(validate=True)
    derivations.start(derivations.password_bytes(password), salt, int(key["N"]), int(key["r"]), int(key["p"]))
