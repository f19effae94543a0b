"""Where an S3 client's keys and region come from, in the order of the AWS tools.

Keys: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), then the profile
(AWS_PROFILE, else `default`) of the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, else
~/.aws/credentials), then static keys in that profile of the config file (AWS_CONFIG_FILE, else
~/.aws/config). Anything else the AWS tools know (assumed roles, SSO, credential processes,
instance and container roles) is botocore's chain, imported only for a user who relies on it.
Region: AWS_DEFAULT_REGION, AWS_REGION, then the profile's `region` in the config file.
"""
import configparser
import os
import threading
from typing import Optional, Tuple

Keys = Tuple[str, str, Optional[str]]  # access key id, secret, session token


class NoCredentials(Exception):
    """No keys anywhere the AWS tools look."""


def _profile() -> str:
    return os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE") or "default"


def _read(variable: str, default: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    try:
        parser.read(os.path.expanduser(os.environ.get(variable) or default))
    except configparser.Error:
        pass  # a damaged file gives nothing, as if it were missing
    return parser


def _config_section(profile: str) -> str:
    return profile if profile == "default" else f"profile {profile}"


def _static_keys(parser: configparser.RawConfigParser, section: str) -> Optional[Keys]:
    if not parser.has_section(section):
        return None
    get = lambda name: parser.get(section, name, fallback="").strip() or None  # noqa: E731
    key_id, secret = get("aws_access_key_id"), get("aws_secret_access_key")
    if key_id and secret:
        return key_id, secret, get("aws_session_token")
    return None


def configured_region() -> Optional[str]:
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if region:
        return region
    config = _read("AWS_CONFIG_FILE", "~/.aws/config")
    return config.get(_config_section(_profile()), "region", fallback="").strip() or None


class Credentials:
    """The keys for every request: found once, on first use. Keys from botocore's chain may
    expire and be renewed (roles): those are asked for on each request."""

    def __init__(self):
        self._lock = threading.Lock()
        self._static: Optional[Keys] = None
        self._renewing = None  # botocore's credentials object, when the keys came from there

    def current(self) -> Keys:
        if self._static is None and self._renewing is None:
            with self._lock:
                if self._static is None and self._renewing is None:
                    self._find()
        if self._static is not None:
            return self._static
        frozen = self._renewing.get_frozen_credentials()
        return frozen.access_key, frozen.secret_key, frozen.token

    def _find(self) -> None:
        key_id, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if key_id and secret:
            self._static = key_id, secret, os.environ.get("AWS_SESSION_TOKEN") or None
            return
        profile = _profile()
        self._static = (_static_keys(_read("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"), profile)
                        or _static_keys(_read("AWS_CONFIG_FILE", "~/.aws/config"), _config_section(profile)))
        if self._static is None:
            self._renewing = _botocore_chain()

    @classmethod
    def fixed(cls, keys: Keys) -> "Credentials":
        made = cls()
        made._static = keys
        return made


def _botocore_chain():
    """botocore's own search (roles, SSO, processes, instance metadata); NoCredentials when
    it finds nothing either."""
    try:
        import botocore.session
    except ImportError:
        raise NoCredentials("no credentials found") from None
    try:
        found = botocore.session.get_session().get_credentials()
    except Exception as exc:  # a named profile that does not exist, a role that cannot be assumed
        raise NoCredentials(" ".join(str(exc).split())) from None
    if found is None:
        raise NoCredentials("no credentials found")
    return found
