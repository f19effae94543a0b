"""The repository config: format version, repository id and the chunker polynomial."""
import os
from dataclasses import dataclass

from ..errors import IntegrityError, UsageError
from ..model import gojson

STABLE_VERSION = 2
LATEST_VERSION = 2
MIN_VERSION = 1


@dataclass(frozen=True)
class Config:
    """The config file's fields (format version, repository id, chunker polynomial)."""
    version: int
    id: str
    chunker_polynomial: int

    def to_json(self) -> dict:
        return {"version": self.version, "id": self.id, "chunker_polynomial": "%x" % self.chunker_polynomial}

    @classmethod
    def from_json(cls, raw: bytes) -> "Config":
        try:
            obj = gojson.loads(raw)
            if not isinstance(obj["id"], str):
                raise TypeError("id is not a string")
            cfg = cls(int(obj["version"]), obj["id"], int(obj["chunker_polynomial"], 16))
        except gojson.DECODING_ERRORS:
            raise IntegrityError("config file is damaged: invalid JSON or fields") from None
        if not MIN_VERSION <= cfg.version <= LATEST_VERSION:
            raise IntegrityError(f"unsupported repository version {cfg.version}")
        return cfg

    @classmethod
    def new(cls, version: int, polynomial: int) -> "Config":
        return cls(version, os.urandom(32).hex(), polynomial)


def parse_version(text) -> int:
    """`--repository-version`: a number, 'stable' or 'latest'."""
    text = str(text)
    if text == "stable":
        return STABLE_VERSION
    if text == "latest":
        return LATEST_VERSION
    try:
        version = int(text)
    except ValueError:
        raise UsageError("invalid repository version") from None
    if not MIN_VERSION <= version <= LATEST_VERSION:
        raise UsageError(f"only repository versions between {MIN_VERSION} and {LATEST_VERSION} are allowed")
    return version
