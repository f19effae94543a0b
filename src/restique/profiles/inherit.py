"""A profile built on another: `inherit = "base"` takes every value of base that the profile
does not set itself (key by key; `options` tables are merged name by name)."""
from typing import Dict, List

from .config import Profile, ProfileError


def resolve(profiles: Dict[str, Profile], name: str) -> Profile:
    """The profile with everything it inherits; ProfileError for an unknown parent or a loop."""
    chain = _chain(profiles, name)
    merged = Profile(name, profiles[name].file)
    for ancestor in reversed(chain):  # the farthest first, so nearer values win
        for section, values in ancestor.values.items():
            target = merged.values.setdefault(section, {})
            for key, value in values.items():
                if key == "options" and not section:
                    target[key] = {**target.get(key, {}), **value}
                else:
                    target[key] = value
                merged.lines[(section, key)] = ancestor.lines[(section, key)]
    merged.values.get("", {}).pop("inherit", None)
    return merged


def _chain(profiles: Dict[str, Profile], name: str) -> List[Profile]:
    """The profile, its parent, its parent's parent ..."""
    chain = [profiles[name]]
    while True:
        current = chain[-1]
        parent = current.get("", "inherit")
        if parent is None:
            return chain
        where = f"{current.file}:{current.lines[('', 'inherit')]}: {current.name}.inherit"
        if parent not in profiles:
            raise ProfileError(f'{where}: unknown profile "{parent}"')
        names = [p.name for p in chain]
        if parent in names:
            loop = " -> ".join(names[names.index(parent):] + [parent])
            raise ProfileError(f"{where}: inheritance loop: {loop}")
        chain.append(profiles[parent])
