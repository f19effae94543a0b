"""Every key a profile may hold, in one table: the section it belongs to, its type, and the
click parameter it sets (the command name "" is the global options of `restique`)."""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

# The sections of a profile besides its top level ([profile.NAME]).
SECTIONS = ("backup", "forget", "check", "hooks")


@dataclass(frozen=True)
class Key:
    """type: str, int, bool, duration (a keep-within string such as "1y6m"), path (a str, ~ expanded, relative to the file's folder),
    list (of str), paths (list of paths), table (str -> str), count (int >= -1 or
    "unlimited"), commands (a str or a list of str). command/param: the click command and
    parameter the value is a default for (None: used by `run` or the profile itself only)."""
    type: str
    command: Optional[str] = None
    param: Optional[str] = None


def _flags(command: str, **keys: str) -> Dict[str, Key]:
    """Keys named after a command's flag: key -> type, parameter = the flag's name."""
    return {name: Key(kind, command, name.replace("-", "_")) for name, kind in keys.items()}


GLOBAL_KEYS: Dict[str, Key] = {
    "inherit": Key("str"),
    "repository": Key("str", "", "repo"),
    "password": Key("str"),  # only with allow-password-in-file = true
    "allow-password-in-file": Key("bool"),
    "options": Key("table", "", "options"),
    **_flags("", **{"repository-file": "path", "password-file": "path", "password-command": "str",
                    "key-hint": "str", "cache-dir": "path", "no-cache": "bool", "compression": "str",
                    "pack-size": "int", "retry-lock": "str", "limit-upload": "int",
                    "limit-download": "int"}),
}

BACKUP_KEYS: Dict[str, Key] = {
    "sources": Key("paths", "backup", "paths"),
    "exclude": Key("list", "backup", "exclude_patterns"),
    "iexclude": Key("list", "backup", "exclude_ipatterns"),
    "exclude-file": Key("paths", "backup", "exclude_files"),
    "iexclude-file": Key("paths", "backup", "exclude_ifiles"),
    "tags": Key("list", "backup", "tag"),
    "files-from": Key("paths", "backup", "files_from"),
    **_flags("backup", **{"exclude-caches": "bool", "exclude-if-present": "list",
                          "exclude-larger-than": "str", "one-file-system": "bool", "host": "str",
                          "read-concurrency": "int", "skip-if-unchanged": "bool", "group-by": "str",
                          "with-atime": "bool", "ignore-ctime": "bool", "ignore-inode": "bool"}),
}

_POLICY_COUNTS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
_POLICY_WITHIN = ("", "-hourly", "-daily", "-weekly", "-monthly", "-yearly")

FORGET_KEYS: Dict[str, Key] = {
    **{f"keep-{name}": Key("count", "forget", f"keep_{name}") for name in _POLICY_COUNTS},
    **{f"keep-within{suffix}": Key("duration", "forget", f"keep_within{suffix.replace('-', '_')}")
       for suffix in _POLICY_WITHIN},
    "keep-tag": Key("list", "forget", "keep_tags"),
    **_flags("forget", **{"group-by": "str", "prune": "bool"}),
    **_flags("prune", **{"max-unused": "str", "max-repack-size": "str", "repack-cacheable-only": "bool",
                         "repack-small": "bool", "repack-uncompressed": "bool"}),
}

CHECK_KEYS: Dict[str, Key] = {
    "enabled": Key("bool"),  # `run` checks unless false
    **_flags("check", **{"read-data": "bool", "read-data-subset": "str", "with-cache": "bool"}),
}

HOOK_KEYS: Dict[str, Key] = {name: Key("commands") for name in ("before", "after", "on-error")}

SCHEMA: Dict[str, Dict[str, Key]] = {"": GLOBAL_KEYS, "backup": BACKUP_KEYS, "forget": FORGET_KEYS,
                                     "check": CHECK_KEYS, "hooks": HOOK_KEYS}

# forget's --prune runs prune with prune's flags, which forget declares too
SHARED_FLAGS: Dict[str, Tuple[str, ...]] = {"prune": ("forget",)}


def key_name(section: str, key: str) -> str:
    """How a key is named in messages: `backup.sources`, `repository`."""
    return f"{section}.{key}" if section else key
