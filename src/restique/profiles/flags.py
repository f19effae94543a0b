"""A profile as click settings: values for the global options of `restique`, and a
default_map for each command (its flags on the command line still win)."""
from typing import Any, Dict, Tuple

from .config import Profile
from .schema import SCHEMA, SHARED_FLAGS

# Global options that are alternatives to each other: a profile's choice replaces all of
# them, unless the command line names one.
ALTERNATIVES = (("repo", "repository_file"), ("password_file", "password_command"))


def _flag_value(kind: str, value) -> Any:
    if kind in ("list", "paths", "commands"):
        return tuple(value)
    if kind == "count":
        return str(value)
    if kind == "table":
        return tuple(f"{name}={item}" for name, item in value.items())
    return value


def global_settings(profile: Profile) -> Dict[str, Any]:
    """click parameter of the `restique` group -> value, for the keys the profile sets."""
    out = {}
    for key, value in profile.section("").items():
        spec = SCHEMA[""][key]
        if spec.command == "" and spec.param:
            out[spec.param] = _flag_value(spec.type, value)
    return out


def command_defaults(profile: Profile) -> Dict[str, Dict[str, Any]]:
    """command name -> {parameter: default}, as click's default_map takes them."""
    out: Dict[str, Dict[str, Any]] = {}
    for section, values in profile.values.items():
        if not section:
            continue
        for key, value in values.items():
            spec = SCHEMA[section][key]
            if not spec.command or not spec.param:
                continue
            for command in (spec.command,) + SHARED_FLAGS.get(spec.command, ()):
                out.setdefault(command, {})[spec.param] = _flag_value(spec.type, value)
    return out


def literal_password(profile: Profile) -> Tuple[bool, str]:
    """(whether the profile holds a password, the password)."""
    value = profile.get("", "password")
    return value is not None, value or ""
