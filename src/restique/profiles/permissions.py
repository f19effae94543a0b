"""A password written in the profile file is allowed only when the profile says so
(`allow-password-in-file = true`), and only in a file nobody else can read."""
import os
import stat
from typing import Iterable

from .config import Profile, ProfileError


def check_permissions(path: str, profiles: Iterable[Profile]) -> None:
    """ProfileError when a profile holds a password without allowing it, or when any profile
    holds one and the file is readable by its group or others. Checked for the whole file:
    whichever profile is used, the file itself gives the password away."""
    holders = [p for p in profiles if p.get("", "password") is not None]
    for profile in holders:
        if not profile.get("", "allow-password-in-file"):
            raise ProfileError(
                f"{path}:{profile.lines[('', 'password')]}: {profile.name}.password: a password in the "
                "profile file needs allow-password-in-file = true; better use password-file or password-command")
    if not holders:
        return
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        raise ProfileError(f"{path}: holds a password but is readable by others (mode {mode:04o}); "
                           f"make it private with: chmod 600 {path}")
