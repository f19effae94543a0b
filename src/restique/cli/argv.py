"""restic accepts global flags anywhere on the command line (cobra); click wants group
options before the subcommand. Move every global flag to the front, leaving the rest (and
everything after `--`) in place. The global flags are read from the click group itself, so
they are declared once."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import click

from ..errors import UsageError

MAX_VERBOSITY = 3


def global_flags(group: click.Command) -> Dict[str, bool]:
    """flag -> takes a value, for every option of the group."""
    flags = {}
    for param in group.params:
        if isinstance(param, click.Option):
            takes_value = not (param.is_flag or param.count)
            for name in param.opts + param.secondary_opts:
                flags[name] = takes_value
    return flags


def long_spellings(group: click.Command) -> Dict[str, str]:
    """short flag -> its long name, for the group's options that take a plain text value.
    click tries every single-dash token as a long option first and, when that fails, builds a
    "did you mean" list with difflib before it matches the short option: handing it `--repo`
    instead of `-r` spares that on every command line (the imports alone are ~1 MiB)."""
    spellings = {}
    for param in group.params:
        if isinstance(param, click.Option) and param.type is click.STRING and not (param.is_flag or param.count):
            longs = [name for name in param.opts if name.startswith("--")]
            for name in param.opts:
                if longs and len(name) == 2 and name[0] == "-":
                    spellings[name] = longs[0]
    return spellings


def _split(token: str) -> Tuple[str, bool]:
    """(flag name, value attached with '=')."""
    if token.startswith("--") and "=" in token:
        return token.split("=", 1)[0], True
    return token, False


def _verbosity(token: str) -> List[str]:
    """`--verbose=N` (restic's documented form) as N times `-v`."""
    value = token.split("=", 1)[1]
    try:
        level = int(value)
    except ValueError:
        raise click.UsageError(f'invalid argument "{value}" for "-v, --verbose" flag: '
                         f'strconv.ParseInt: parsing "{value}": invalid syntax') from None
    return ["-v"] * max(0, min(level, MAX_VERBOSITY))


def hoist_global_flags(argv: List[str], flags: Dict[str, bool], spellings: Optional[Dict[str, str]] = None) -> List[str]:
    """spellings: short flags given with a separate value are handed on in their long form."""
    spellings = spellings or {}
    front: List[str] = []
    rest: List[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            rest.extend(argv[i:])
            break
        name, attached = _split(token)
        if name == "--verbose" and attached:
            front.extend(_verbosity(token))
        elif name in flags:
            if flags[name] and not attached and i + 1 < len(argv):
                front.extend((spellings.get(token, token), argv[i + 1]))
                i += 1
            else:
                front.append(token)
        elif token.startswith("-v") and set(token[1:]) == {"v"}:
            front.append(token)  # -vv, -vvv
        elif len(token) > 2 and token[:2] in ("-r", "-p", "-o") and not token.startswith("--"):
            front.append(token)  # -r/srv/repo
        else:
            rest.append(token)
        i += 1
    return front + rest
