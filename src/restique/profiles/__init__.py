"""Profiles: named sets of settings in a TOML file, so that `restique --profile home backup`
or `restique run home` needs no flags (see docs/profiles.md).

- schema: every key a profile may hold, its type, and the command flag it sets
- config: finding and reading the file, checking every value against the schema
- inherit: a profile built on another one
- permissions: a file that holds a password must not be readable by others
- hooks: commands run before and after a job, with its result in their environment
"""
from .config import Profile, ProfileError, config_path, load_profile

__all__ = ["Profile", "ProfileError", "config_path", "load_profile"]
