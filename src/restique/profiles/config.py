"""Finding and reading the profile file, and checking every value against the schema.

tomllib reports no positions for values, so the lines of tables and keys are found in the
text itself (locate.py); every error names the file, the line and the key."""
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from ..errors import UsageError
from .locate import KeyLines
from .schema import SCHEMA, SECTIONS, Key, key_name

CONFIG_VARIABLE = "RESTIQUE_CONFIG"


class ProfileError(UsageError):
    """A mistake in the profile file: `<file>:<line>: <profile>.<key>: <problem>`."""


@dataclass
class Profile:
    """One profile with its inherited settings: values[section][key], section "" for the top
    level; lines[(section, key)] where each value was written (for messages)."""
    name: str
    file: str
    values: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    lines: Dict[Tuple[str, str], int] = field(default_factory=dict)

    def get(self, section: str, key: str, default=None):
        return self.values.get(section, {}).get(key, default)

    def section(self, section: str) -> Dict[str, Any]:
        return self.values.get(section, {})


def config_path(given: Optional[str] = None) -> str:
    """--config, else $RESTIQUE_CONFIG, else $XDG_CONFIG_HOME/restique/profiles.toml."""
    path = given or os.environ.get(CONFIG_VARIABLE)
    if not path:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        path = os.path.join(base, "restique", "profiles.toml")
    return os.path.abspath(os.path.expanduser(path))


def read_profiles(path: str) -> Dict[str, Profile]:
    """Every profile in the file, checked against the schema (inheritance not yet applied)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ProfileError(f"profile file {path} does not exist") from None
    except OSError as exc:
        raise ProfileError(f"cannot read profile file {path}: {exc.strerror}") from None
    text = raw.decode("utf-8", errors="replace")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(_syntax_error(path, str(exc))) from None
    where = KeyLines(text)
    unknown = [name for name in document if name != "profile"]
    if unknown:
        raise ProfileError(f"{path}:{where.line(unknown[0])}: {unknown[0]}: unknown table "
                           '(profiles are tables named [profile.NAME])')
    tables = document.get("profile", {})
    if not isinstance(tables, dict):
        raise ProfileError(f"{path}:{where.line('profile')}: profile: must be a table of profiles")
    return {name: _profile(path, name, table, where) for name, table in tables.items()}


def _syntax_error(path: str, message: str) -> str:
    """tomllib's "Expected ... (at line 3, column 7)" as `<file>:3: ...`."""
    import re

    found = re.search(r"\(at line (\d+), column \d+\)$", message)
    if found:
        return f"{path}:{found.group(1)}: not valid TOML: {message[:found.start()].strip()}"
    return f"{path}: not valid TOML: {message}"


def _profile(path: str, name: str, table, where: KeyLines) -> Profile:
    profile = Profile(name, path)
    if not isinstance(table, dict):
        raise ProfileError(f"{path}:{where.line('profile', name)}: {name}: a profile must be a table")
    base = os.path.dirname(path)
    for key, value in table.items():
        if key in SECTIONS and isinstance(value, dict):
            for sub, item in value.items():
                _store(profile, base, where, key, sub, item)
        else:
            _store(profile, base, where, "", key, value)
    return profile


def _store(profile: Profile, base: str, where: KeyLines, section: str, key: str, value) -> None:
    line = where.line("profile", profile.name, *(filter(None, (section, key))))
    label = f"{profile.file}:{line}: {profile.name}.{key_name(section, key)}"
    spec = SCHEMA[section].get(key)
    if spec is None:
        what = f"unknown key in [{section}]" if section else "unknown key"
        if not section and key in SECTIONS:
            what = f"{key} must be a table ([profile.{profile.name}.{key}])"
        raise ProfileError(f"{label}: {what}")
    problem, checked = convert(spec, value, base)
    if problem:
        raise ProfileError(f"{label}: {problem}")
    profile.values.setdefault(section, {})[key] = checked
    profile.lines[(section, key)] = line


def _path(value: str, base: str) -> str:
    value = os.path.expanduser(value)
    return value if os.path.isabs(value) else os.path.normpath(os.path.join(base, value))


def convert(spec: Key, value, base: str) -> Tuple[Optional[str], Any]:
    """(problem or None, the value in the form the flag takes)."""
    kind = spec.type
    if kind in ("str", "path"):
        if not isinstance(value, str):
            return f"must be a string, not {_toml_type(value)}", None
        return None, _path(value, base) if kind == "path" else value
    if kind == "duration":
        return _duration(value)
    if kind == "bool":
        return (None, value) if isinstance(value, bool) else (f"must be true or false, not {_toml_type(value)}", None)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, not {_toml_type(value)}", None
        return (None, value) if value >= 0 else ("must not be negative", None)
    if kind == "count":
        if value == "unlimited" or (isinstance(value, int) and not isinstance(value, bool) and value >= -1):
            return None, value
        return 'must be a number of snapshots (0 or more) or "unlimited"', None
    if kind in ("list", "paths", "commands"):
        if kind == "commands" and isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            return f"must be a list of strings, not {_toml_type(value)}", None
        return None, [_path(item, base) for item in value] if kind == "paths" else list(value)
    if kind == "table":
        if not isinstance(value, dict) or not all(isinstance(item, (str, int, bool)) for item in value.values()):
            return "must be a table of names and values, e.g. { \"s3.region\" = \"eu-west-1\" }", None
        return None, {name: _option_text(item) for name, item in value.items()}
    raise AssertionError(f"unknown schema type {kind}")


def _duration(value) -> Tuple[Optional[str], Any]:
    from ..model.keep_policy import Duration

    if not isinstance(value, str):
        return f'must be a duration such as "1y6m7d2h", not {_toml_type(value)}', None
    try:
        parsed = Duration.parse(value)
    except ValueError as exc:
        return f"{exc}", None
    return (None, value) if not parsed.has_negative() else ("must not be negative", None)


def _option_text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _toml_type(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list" if all(isinstance(item, str) for item in value) else "a list of non-strings"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def load_profile(name: str, path: Optional[str] = None) -> Profile:
    """The named profile of the file at config_path(path), with what it inherits, after the
    file's permissions are checked."""
    from .inherit import resolve
    from .permissions import check_permissions

    path = config_path(path)
    profiles = read_profiles(path)
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ProfileError(f'{path}: unknown profile "{name}" (profiles in the file: {known})')
    check_permissions(path, profiles.values())
    return resolve(profiles, name)

